package inmem_test

import (
	"github.com/tandemdb/tandem/internal/replication"
	"github.com/tandemdb/tandem/internal/transport"
	"github.com/tandemdb/tandem/internal/transport/inmem"
)

// The network carries the real leader and follower: a Leader is a Server,
// and a Follower takes any transport.Dialer (FollowerConfig.Dial).
var (
	_ inmem.Server       = (*replication.Leader)(nil)
	_ transport.Dialer   = (*inmem.Dialer)(nil)
	_ replication.Dialer = (*inmem.Dialer)(nil)
)
