package integration

import (
	"encoding/json"
	"io"
	"net/http"
	"time"
)

func httpGet(addr string) ([]byte, error) {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + addr)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return io.ReadAll(resp.Body)
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
