package sentinel

// Every error reply's text, Redis 7's own where Redis has one, so that the
// first word is always a code.
const (
	errSyntax          = "ERR syntax error"
	errNoSuchMaster    = "ERR No such master with that name"
	errNoPassword      = "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?"
	errNoProto         = "NOPROTO unsupported protocol version"
	errProtoNotInteger = "ERR Protocol version is not an integer or out of range"
	errBadClientName   = "ERR Client names cannot contain spaces, newlines or special characters."
)

// errManaged is the reply to the SENTINEL subcommands that would change
// or vote on the topology, which only the orchestrator does.
func errManaged(sub string) string {
	return "ERR tandem: SENTINEL " + sub + " is not supported: the topology is managed by the tandem orchestrator; use tandem switchover"
}

// errArity is Redis 7's reply to a command (or "cmd|sub") with the wrong
// number of arguments.
func errArity(cmd string) string {
	return "ERR wrong number of arguments for '" + cmd + "' command"
}

// errUnknownSubcommand is Redis's reply to CMD <sub> for an unknown sub.
func errUnknownSubcommand(sub []byte, cmd string) string {
	return "ERR unknown subcommand '" + string(trunc(sub, 128)) + "'. Try " + cmd + " HELP."
}

// errUnknownCommand is Redis 7's reply to an unknown command: the name and
// then the arguments quoted, each cut so that the list stays within 128
// bytes (the trailing space is Redis's too).
func errUnknownCommand(args [][]byte) string {
	b := make([]byte, 0, 64)
	b = append(b, "ERR unknown command '"...)
	b = append(b, trunc(args[0], 128)...)
	b = append(b, "', with args beginning with: "...)
	listed := 0
	for _, a := range args[1:] {
		if listed >= 128 {
			break
		}
		part := trunc(a, 128-listed)
		b = append(b, '\'')
		b = append(b, part...)
		b = append(b, '\'', ' ')
		listed += len(part) + 3
	}
	return string(b)
}

func trunc(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}
