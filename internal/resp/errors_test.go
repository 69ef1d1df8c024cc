package resp

import (
	"fmt"
	"strings"
	"testing"

	"github.com/tandemdb/tandem/internal/resp/replies"
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
		errConfigSet([]byte("x")), errConfigSetInteger("hash-max-listpack-entries"), protocolErrorText(errBadBulkLen), unknownCommand([][]byte{[]byte("x")}),
		fencedText(ErrFenced),
	} {
		code, _, _ := strings.Cut(text, " ")
		if code == "" || strings.ToUpper(code) != code || strings.ContainsAny(text, "\r\n") {
			t.Errorf("%q: want an upper-case code word first and one line", text)
		}
	}
}

// Every reply the error table sends says what clients take it to say
// (package replies, which the public client matches with): a planted
// change to a code word or to the table fails here.
func TestRepliesOutcome(t *testing.T) {
	for text, want := range map[string]replies.Outcome{
		replyReadOnly:         replies.NotApplied,
		replyNotLeader:        replies.NotApplied,
		replyLoading:          replies.NotApplied,
		fencedText(ErrFenced): replies.NotApplied,
		fencedText(fmt.Errorf("lease lost: %w", ErrFenced)): replies.NotApplied,
		replyOverloaded: replies.NotApplied,
		replyNoReplicas: replies.MaybeApplied,
		(&tooFewReplicasError{got: 1, want: 2}).Error(): replies.MaybeApplied,
		replyLeadershipLost:                             replies.MaybeApplied,
		replyShuttingDown:                               replies.MaybeApplied,
		replyConnClosed:                                 replies.Answer,
		replyInternal + "0badf00d":                      replies.Answer,
		errSyntax:                                       replies.Answer,
		errArity("get"):                                 replies.Answer,
	} {
		if got := replies.Match(text); got != want {
			t.Errorf("%q: clients take it as %v, want %v", text, got, want)
		}
	}
}
