package sentinel

// The Sentinel endpoint's own error texts, Redis 7 Sentinel's where Redis
// has one. Every other error reply (arity, unknown command or subcommand,
// AUTH, HELLO, CLIENT, protocol errors) comes from the resp layer's one
// table, as on every tandem endpoint.
const errNoSuchMaster = "ERR No such master with that name"

// errManaged is the reply to the SENTINEL subcommands that would change
// or vote on the topology, which only the orchestrator does.
func errManaged(sub string) string {
	return "ERR tandem: SENTINEL " + sub + " is not supported: the topology is managed by the tandem orchestrator; use tandem switchover"
}
