// Package orchapi is the orchestrator's HTTP API, declared once: its paths
// and parameters, the answer to a manual operation (Result), and the one
// client of it, used by `tandem promote`, `tandem switchover`, a node's
// REPLICAOF NO ONE and `tandem status`. The orchestrator serves exactly
// these; the /status document itself is statusdoc.Orchestrator.
//
// A refused operation (the orchestrator explains why: a node behind
// another, a target that does not answer) is an error that matches
// ErrRefused; one sent to an orchestrator that is not the active one
// matches ErrNotActive. The package does no discovery: callers find the
// active orchestrator's address through coord.
package orchapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"

	"github.com/tandemdb/tandem/internal/statusdoc"
)

// Paths the orchestrator serves over HTTP.
const (
	PathStatus     = "/status"     // GET: statusdoc.Orchestrator
	PathMetrics    = "/metrics"    // GET: Prometheus
	PathPromote    = "/promote"    // POST ?node=ID[&accept-data-loss=true]: Result
	PathSwitchover = "/switchover" // POST [?to=ID]: Result
)

// Query parameters of the operations.
const (
	ParamNode           = "node"
	ParamAcceptDataLoss = "accept-data-loss"
	ParamTo             = "to"
)

// Result is the answer to a manual operation, in every HTTP status: OK
// with the change made, or Error saying why not.
type Result struct {
	OK       bool   `json:"ok"`
	Error    string `json:"error,omitempty"`
	From     string `json:"from,omitempty"`
	To       string `json:"to,omitempty"`
	OldEpoch uint64 `json:"old_epoch,omitempty"`
	NewEpoch uint64 `json:"new_epoch,omitempty"`
	// PauseMs: a switchover's write pause, from the old leader refusing
	// writes to the new one answering them.
	PauseMs float64 `json:"pause_ms,omitempty"`
}

var (
	// ErrRefused: the operation was refused (HTTP 409); the message says
	// why.
	ErrRefused = errors.New("refused")
	// ErrNotActive: the orchestrator asked is not the active one (HTTP
	// 421).
	ErrNotActive = errors.New("orchestrator: not the active orchestrator")
)

// StatusCode is the HTTP status an operation's error is served with.
func StatusCode(err error) int {
	switch {
	case err == nil:
		return http.StatusOK
	case errors.Is(err, ErrNotActive):
		return http.StatusMisdirectedRequest
	case errors.Is(err, ErrRefused):
		return http.StatusConflict
	default:
		return http.StatusInternalServerError
	}
}

// Error is a failed operation as the client sees it: the orchestrator's
// message and HTTP status.
type Error struct {
	Code int
	Msg  string
}

func (e *Error) Error() string { return e.Msg }

// Is makes errors.Is(err, ErrRefused) and ErrNotActive hold across HTTP.
func (e *Error) Is(target error) bool {
	return target == ErrRefused && e.Code == http.StatusConflict ||
		target == ErrNotActive && e.Code == http.StatusMisdirectedRequest
}

// Promote asks the orchestrator at addr (host:port) to make node the
// leader now.
func Promote(ctx context.Context, addr, node string, acceptDataLoss bool) (Result, error) {
	return post(ctx, addr, PathPromote, url.Values{ParamNode: {node}, ParamAcceptDataLoss: {strconv.FormatBool(acceptDataLoss)}})
}

// Switchover asks the orchestrator at addr for a switchover to to (""
// lets it choose).
func Switchover(ctx context.Context, addr, to string) (Result, error) {
	q := url.Values{}
	if to != "" {
		q.Set(ParamTo, to)
	}
	return post(ctx, addr, PathSwitchover, q)
}

// Status reads the orchestrator's /status.
func Status(ctx context.Context, addr string) (statusdoc.Orchestrator, error) {
	var st statusdoc.Orchestrator
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+PathStatus, nil)
	if err != nil {
		return st, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return st, fmt.Errorf("orchestrator at %s: %w", addr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("orchestrator at %s: status: %s", addr, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return st, fmt.Errorf("orchestrator at %s: status: %w", addr, err)
	}
	return st, nil
}

func post(ctx context.Context, addr, path string, q url.Values) (Result, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+path+"?"+q.Encode(), nil)
	if err != nil {
		return Result{}, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return Result{}, fmt.Errorf("orchestrator at %s: %w", addr, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return Result{}, fmt.Errorf("orchestrator at %s: %s: %w", addr, path, err)
	}
	var res Result
	if err := json.Unmarshal(body, &res); err != nil {
		// Not this API (an older orchestrator, a proxy's error page).
		return Result{}, &Error{Code: resp.StatusCode, Msg: fmt.Sprintf("orchestrator at %s: %s: %s: %q", addr, path, resp.Status, body)}
	}
	if !res.OK {
		msg := res.Error
		if msg == "" {
			msg = resp.Status
		}
		return Result{}, &Error{Code: resp.StatusCode, Msg: msg}
	}
	return res, nil
}
