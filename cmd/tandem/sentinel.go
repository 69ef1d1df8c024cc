package main

import (
	"log/slog"

	"github.com/tandemdb/tandem/internal/orchestrator"
)

// startSentinel starts the Sentinel-compatible endpoint (not built yet).
func startSentinel(cfg *orchestrator.Config, addr string, log *slog.Logger) (func(), error) {
	return func() {}, nil
}
