package resp

import (
	"strings"
	"testing"
)

// TestErrorTableCodes: every text of the error table starts with an
// upper-case code word and is one line, as RESP and clients need.
func TestErrorTableCodes(t *testing.T) {
	for _, text := range []string{
		replyReadOnly, replyLoading, replyNotLeader, replyFenced, replyNoReplicas, replyOverloaded, replyLeadershipLost,
		replyShuttingDown, replyConnClosed, replyInternal + "0000abcd",
		errNotInteger, errSyntax, errDBIndex, errWrongPass, errAuthNoPassword, errProtoNotInteger,
		errNoProto, errBadClientName, errTimeoutNotInteger, errTimeoutNegative, errBadMasterPort,
		errNoConfigFile,
		errArity("get"), errArity("client|setname"), errUnknownSubcommand([]byte("x"), "CLIENT"),
		errHelloOption([]byte("x")), errUnrecognizedOption([]byte("x")), errBadLibInfo("lib-name"),
		errConfigSet([]byte("x")), protocolErrorText(errBadBulkLen), unknownCommand([][]byte{[]byte("x")}),
		fencedText(ErrFenced),
	} {
		code, _, _ := strings.Cut(text, " ")
		if code == "" || strings.ToUpper(code) != code || strings.ContainsAny(text, "\r\n") {
			t.Errorf("%q: want an upper-case code word first and one line", text)
		}
	}
}
