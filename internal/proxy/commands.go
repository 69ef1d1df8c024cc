package proxy

import (
	"strings"

	"github.com/tidwall/redcon"

	"github.com/tandemdb/tandem/internal/resp"
)

// The session commands, answered by the proxy from the session's state,
// with a node's syntax and texts: TANDEM.READPOLICY [policy], TANDEM.TOKEN
// [token|RESET], TANDEM.USER [id].

func (p *Proxy) cmdReadPolicy(c redcon.Conn, sess *resp.Session, args [][]byte) {
	s := sess.Local.(*session)
	if len(args) == 1 {
		c.WriteBulkString(s.policy.String())
		return
	}
	a := make([]string, len(args)-1)
	for i, b := range args[1:] {
		a[i] = string(b)
	}
	pol, err := resp.ParsePolicy(a)
	if err != nil {
		c.WriteError("ERR tandem: " + oneLine(err.Error()))
		return
	}
	s.policy = pol
	c.WriteString("OK")
}

func (p *Proxy) cmdToken(c redcon.Conn, sess *resp.Session, args [][]byte) {
	s := sess.Local.(*session)
	switch {
	case len(args) == 1:
		c.WriteBulkString(resp.FormatToken(s.token()))
	case len(args) > 2:
		c.WriteError(resp.ArityError("tandem.token"))
	case strings.EqualFold(string(args[1]), "reset"):
		s.write, s.read = position{}, position{}
		c.WriteString("OK")
	default:
		t, err := resp.ParseToken(string(args[1]))
		if err != nil {
			c.WriteError("ERR tandem: malformed token '" + string(trunc(args[1], 64)) + "' (" + err.Error() + "); want t1:<epoch>:<lsn> as TANDEM.TOKEN answers it")
			return
		}
		s.write = maxPos(s.write, t)
		c.WriteString("OK")
	}
}

func (p *Proxy) cmdUser(c redcon.Conn, sess *resp.Session, args [][]byte) {
	s := sess.Local.(*session)
	switch {
	case len(args) == 1 && s.user == "":
		c.WriteNull()
	case len(args) == 1:
		c.WriteBulkString(s.user)
	case len(args) > 2 || len(args[1]) == 0 || len(args[1]) > 256:
		c.WriteError("ERR tandem: TANDEM.USER takes one id of 1 to 256 bytes")
	default:
		s.user = string(args[1])
		c.WriteString("OK")
	}
}
