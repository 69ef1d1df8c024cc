package orchapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestClient: the client sends each operation to its path with its
// parameters, and an error served with a status keeps its meaning
// (errors.Is) on this side.
func TestClient(t *testing.T) {
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = append(got, r.Method+" "+r.URL.Path+"?"+r.URL.RawQuery)
		var res Result
		code := http.StatusOK
		switch r.URL.Query().Get(ParamNode) + r.URL.Query().Get(ParamTo) {
		case "n2":
			res = Result{OK: true, From: "n1", To: "n2", OldEpoch: 3, NewEpoch: 4}
		case "behind":
			code, res = StatusCode(fmt.Errorf("%w: behind n1", ErrRefused)), Result{Error: "refused: behind n1"}
		case "standby":
			code, res = StatusCode(ErrNotActive), Result{Error: ErrNotActive.Error()}
		case "broken":
			http.Error(w, "bad gateway", http.StatusBadGateway)
			return
		}
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(res)
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	ctx := context.Background()

	res, err := Promote(ctx, addr, "n2", true)
	if err != nil || res != (Result{OK: true, From: "n1", To: "n2", OldEpoch: 3, NewEpoch: 4}) {
		t.Fatalf("promote: %+v %v", res, err)
	}
	if _, err := Switchover(ctx, addr, "behind"); !errors.Is(err, ErrRefused) || errors.Is(err, ErrNotActive) || err.Error() != "refused: behind n1" {
		t.Fatalf("refused switchover: %v", err)
	}
	if _, err := Promote(ctx, addr, "standby", false); !errors.Is(err, ErrNotActive) || errors.Is(err, ErrRefused) {
		t.Fatalf("standby: %v", err)
	}
	if _, err := Switchover(ctx, addr, "broken"); err == nil || errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "502") {
		t.Fatalf("not this API: %v", err)
	}
	want := []string{
		"POST " + PathPromote + "?accept-data-loss=true&node=n2",
		"POST " + PathSwitchover + "?to=behind",
		"POST " + PathPromote + "?accept-data-loss=false&node=standby",
		"POST " + PathSwitchover + "?to=broken",
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("requests %v, want %v", got, want)
	}
	if StatusCode(errors.New("etcd down")) != http.StatusInternalServerError || StatusCode(nil) != http.StatusOK {
		t.Fatal("StatusCode")
	}
}
