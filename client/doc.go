// Package client is tandem's Go client: a go-redis client whose
// connections always go to the cluster's current leader, and which retries
// a command across a failover only where that cannot apply it twice.
//
// # Use
//
//	c, err := client.New(client.Options{Etcd: []string{"127.0.0.1:2379"}})
//	if err != nil { ... }
//	defer c.Close()
//	err = c.Set(ctx, "k", "v", 0).Err()
//	v, err := c.Get(ctx, "k").Result()
//
// A *Client embeds a *redis.Client, so every go-redis command, pipelines
// (Pipeline, Pipelined) and Do work as usual; *Client is a
// redis.UniversalClient and a redis.Cmdable. Close the *Client, not the
// embedded *redis.Client, so that the watch on the topology stops too.
//
// # Finding the leader
//
// With Options.Etcd the client watches the cluster's topology in etcd (the
// keys of package internal/coord: topology names the leader and its epoch,
// members/<id> its RESP address) and moves to a new leader as soon as etcd
// reports it: a watch, not a poll. With Options.Addrs instead it asks each
// node ROLE (tandem answers master, slave or fenced) and INFO (for the
// epoch), takes the master with the highest epoch, and asks again only when
// a node refuses a command or a connection; a replica's ROLE names its
// leader, which is asked too.
//
// Every connection is dialed to the leader of the moment (a custom
// redis.Options.Dialer, as go-redis's FailoverClient does with Sentinel).
// When the leader changes, connections to the old one are stale: the pool
// drops an idle one when it next takes it (its health check fails), a
// stale connection refuses to start a new request (nothing is sent, so the
// command is retried on the new leader), and any stale connection still
// open a second after the change is closed. A dial that fails, or finds no
// leader known, waits for the next leader (Options.FailoverTimeout at most)
// instead of failing at once; go-redis's pool would otherwise stop dialing
// for a second after PoolSize failed dials.
//
// The embedded *redis.Client reads from the leader too. Reads from
// followers go through a Session (Client.NewSession), under a read policy
// the nodes enforce: ReadYourWrites (the default), Monotonic,
// Linearizable, Bounded(d), Any or Leader, per session or per call
// (Session.ReadAs). A session keeps its position token (Session.Token,
// which SessionOptions.Token takes back, e.g. from a cookie) and its user
// (cross-device read-your-writes). Session.Do sends a write to the leader
// and learns its position in the same round trip; Session.Read sends a
// read to a follower (a monotonic session sticks to one) with the
// session's token, policy and user in front, and to the leader if the
// follower answers "TRYAGAIN tandem: read elsewhere" (it has not applied
// the session's position within its --read-wait, or is staler than the
// bound) or cannot be reached. The followers are the topology's other
// members (Etcd) or the listed nodes that say they are replicas (Addrs).
// SessionOptions.LeaderAfterWrite and LeaderPrefixes add the textbook's
// simpler variants: the leader for a while after a write, and for keys
// under given prefixes.
//
// # Retry policy (a specification)
//
// go-redis's own retries (Options.Redis.MaxRetries) are turned off: they
// resend any command on EOF or a timeout, which can apply an INCR twice.
// Instead Classify sorts every error into one of three classes:
//
//	error                                            class            why
//	-----                                            -----            ---
//	-READONLY (a replica, or a node between roles)   RetryAny         refused before it was sequenced
//	-MASTERDOWN (a fenced node)                      RetryAny         refused: the node has no role
//	-TRYAGAIN (too many writes in flight)            RetryAny         refused before it was sequenced
//	-LOADING (a node not yet readable)               RetryAny         refused
//	dial failed, no leader known, pool timeout       RetryAny         never sent
//	stale connection refused to send                 RetryAny         never sent
//	write failed with no byte of the request sent    RetryAny         never sent
//	-UNCERTAIN (leader stopped after sequencing it)  RetryIdempotent  it may still commit
//	-NOREPLICAS (not committed in the write timeout) RetryIdempotent  it may still commit
//	ERR internal error: server shutting down         RetryIdempotent  canceled after it may have run
//	timeout, EOF, connection reset or closed         RetryIdempotent  the old leader may have applied it
//	the caller's context ended                       NoRetry          the caller gave up
//	any other reply (-ERR, -WRONGTYPE, redis.Nil...) NoRetry          that is the command's answer
//
// RetryAny: wait for the next leader (or, if the leader is unchanged, back
// off 5 ms, doubling to 100 ms) and send the command again, whatever it is.
// RetryIdempotent: the same, but only for a command that IsIdempotent (or
// Options.Idempotent) accepts; any other command returns the error, and
// its outcome is unknown. Retries, and a dial's wait for a leader, stop
// Options.FailoverTimeout (default 5 s) after the command started, or when
// ctx ends, and return the last error.
//
// A command is idempotent when running it a second time right after the
// first leaves the same data and gives the same reply, so a retry cannot
// be told from one execution. The allow-list (IsIdempotent):
//
//	reads: GET MGET EXISTS STRLEN GETRANGE SUBSTR TTL PTTL EXPIRETIME
//	       PEXPIRETIME TYPE SCAN KEYS DBSIZE PING ECHO INFO ROLE TIME
//	       COMMAND, and GETEX with no option or with PERSIST
//	session state: TANDEM.TOKEN TANDEM.READPOLICY TANDEM.USER
//	writes: SET k v with no option or with EX, PX, EXAT or PXAT only;
//	        SETEX, PSETEX, MSET, FLUSHDB, FLUSHALL
//
// and nothing else. Not on it, for example: INCR and the counters (a
// second run adds again), APPEND, SETNX, MSETNX, SET with NX or XX (the
// retry's reply says "not set"), SET GET, GETSET and GETDEL (the retry
// returns the new value or nothing), SET KEEPTTL and SETRANGE (if the key
// expires between the runs the retry creates a key that never expires or
// has other bytes), DEL and UNLINK (the retry counts 0 keys), EXPIRE and
// its kind and PERSIST (a retry after the key expired or the TTL was
// removed answers 0), RENAME (the retry finds no key), WAIT (it is about
// the connection's last write, on the node that had it). A relative
// expiry (SET EX) that is retried counts from the retry, which is still
// within the command's own duration.
//
// Idempotence here is a single writer's: if another client writes the same
// key between the first run and the retry, the retry overwrites it again.
// A caller that cannot accept that supplies Options.Idempotent.
//
// A pipeline's commands are retried from the first one whose error is
// retryable, together and in order, and only if every one of them may be
// retried (its error is RetryAny, or it is idempotent): a command that got
// no retryable error but comes after one is run again too, so that a read
// after a refused write sees the write. Commands before that one keep
// their replies. (go-redis stamps a broken connection's error on every
// command of the pipeline, also on those that were answered, so such a
// pipeline is retried only if it is idempotent as a whole.) A MULTI/EXEC
// pipeline is retried as a whole on the same rule.
package client
