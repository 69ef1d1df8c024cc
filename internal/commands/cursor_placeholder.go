package commands

// CursorTable placeholder so other packages compile while the real one is
// written; helper-1: delete this file when you add the real CursorTable.
type CursorTable struct{}
