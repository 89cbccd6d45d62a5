// Package sqlite implements store.Store on an embedded SQLite database
// (modernc.org/sqlite, no cgo), the default store of a single-node sbx.
//
// The schema lives in migrations/*.sql, embedded and applied with goose when
// the database is opened. Migrations are append-only: a released file is
// never edited; a schema change is a new file.
//
// Concurrency: SQLite admits one writer at a time. Rather than letting many
// connections race for the write lock (and fail with SQLITE_BUSY when one
// waits too long), DB keeps two pools on the same file: a write pool of
// exactly one connection, whose transactions begin IMMEDIATE, so writers
// queue in database/sql in Go; and a read pool of several read-only
// connections, which under WAL never block on the writer. busy_timeout is
// still set, for other processes that open the file (sqlite3 CLI, backups).
//
// Times are stored as INTEGER unix nanoseconds and come back in UTC, equal
// to what was written to the nanosecond.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"runtime"
	"strings"
	"time"

	"github.com/pressly/goose/v3"
	sqlite "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/sbx-sh/sbx/internal/errdefs"
	"github.com/sbx-sh/sbx/internal/store"
)

//go:embed migrations/*.sql
var migrations embed.FS

// busyTimeout is how long a connection waits for a lock held by another
// process before it fails with SQLITE_BUSY.
const busyTimeout = 10 * time.Second

// DB is a store.Store backed by one SQLite file. It is safe for concurrent
// use; see the package doc for how writes are serialized.
type DB struct {
	w   *sql.DB // one connection, BEGIN IMMEDIATE: all writes
	r   *sql.DB // read-only connections: all reads outside a write transaction
	log *slog.Logger
	now func() time.Time
}

var _ store.Store = (*DB)(nil)

// Open opens (creating if needed) the database file at path, applies any
// pending migrations and returns the store. path must be a file path, not
// ":memory:" (the two pools must see the same database) and must not contain
// '?'.
func Open(ctx context.Context, path string, log *slog.Logger) (*DB, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if path == "" || path == ":memory:" || strings.HasPrefix(path, "file:") || strings.ContainsRune(path, '?') {
		return nil, fmt.Errorf("opening store: %q is not a plain file path", path)
	}
	pragmas := fmt.Sprintf("_pragma=busy_timeout(%d)&_pragma=foreign_keys(1)&_pragma=synchronous(NORMAL)", busyTimeout.Milliseconds())

	// journal_mode=WAL is persistent in the file; setting it on the writer
	// is enough, and must happen before any reader opens.
	w, err := sql.Open("sqlite", path+"?"+pragmas+"&_pragma=journal_mode(WAL)&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("opening store %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)
	if err := w.PingContext(ctx); err != nil {
		w.Close()
		return nil, fmt.Errorf("opening store %s: %w", path, err)
	}
	if err := migrate(ctx, w, log); err != nil {
		w.Close()
		return nil, fmt.Errorf("migrating store %s: %w", path, err)
	}

	r, err := sql.Open("sqlite", path+"?"+pragmas+"&_pragma=query_only(1)")
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("opening store %s: %w", path, err)
	}
	n := max(4, runtime.GOMAXPROCS(0))
	r.SetMaxOpenConns(n)
	r.SetMaxIdleConns(n)
	if err := r.PingContext(ctx); err != nil {
		w.Close()
		r.Close()
		return nil, fmt.Errorf("opening store %s: %w", path, err)
	}
	return &DB{w: w, r: r, log: log, now: time.Now}, nil
}

// migrate applies the embedded migrations that the file has not seen yet.
func migrate(ctx context.Context, db *sql.DB, log *slog.Logger) error {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return err
	}
	p, err := goose.NewProvider(goose.DialectSQLite3, db, sub,
		goose.WithSlog(log), goose.WithDisableGlobalRegistry(true))
	if err != nil {
		return err
	}
	res, err := p.Up(ctx)
	if err != nil {
		return err
	}
	for _, r := range res {
		log.Info("store migration applied", "version", r.Source.Version, "took", r.Duration)
	}
	return nil
}

// Close closes both pools.
func (db *DB) Close() error {
	return errors.Join(db.r.Close(), db.w.Close())
}

// write runs fn in one write transaction.
func (db *DB) write(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

// sqliteCode returns the extended result code of a SQLite error, or 0.
func sqliteCode(err error) int {
	var se *sqlite.Error
	if errors.As(err, &se) {
		return se.Code()
	}
	return 0
}

// isUnique reports whether err is a unique or primary-key violation.
func isUnique(err error) bool {
	c := sqliteCode(err)
	return c == sqlite3.SQLITE_CONSTRAINT_UNIQUE || c == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
}

// isForeignKey reports whether err is a foreign-key violation.
func isForeignKey(err error) bool {
	return sqliteCode(err) == sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY
}

// checkAffected turns "no row changed" into ErrNotFound with a public message.
func checkAffected(res sql.Result, format string, args ...any) error {
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return errdefs.Publicf(errdefs.ErrNotFound, format, args...)
	}
	return nil
}

// nanos encodes a time for storage; the zero time is 0.
func nanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// fromNanos decodes what nanos stored.
func fromNanos(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

// orNow returns t, or now when t is zero, so records always carry a time.
func orNow(t, now time.Time) time.Time {
	if t.IsZero() {
		return now
	}
	return t
}

// jsonText marshals v for a JSON column.
func jsonText(v any) (string, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return "", fmt.Errorf("encoding %T: %w", v, err)
	}
	return string(b), nil
}

// fromJSON unmarshals a JSON column into v.
func fromJSON(s string, v any) error {
	if err := json.Unmarshal([]byte(s), v); err != nil {
		return fmt.Errorf("decoding %T: %w", v, err)
	}
	return nil
}

// clampLimit applies the default of 100 and the cap of 1000.
func clampLimit(n int) int {
	switch {
	case n <= 0:
		return 100
	case n > 1000:
		return 1000
	}
	return n
}

// rowScanner is what the scan functions read one record from: a *sql.Row
// or the current row of *sql.Rows.
type rowScanner interface{ Scan(...any) error }

// queryAll runs query on the read pool and scans every row with scan,
// appending to out (callers pass a non-nil empty slice where an empty list
// must not be nil). what names the operation in errors ("listing volumes").
func queryAll[T any](ctx context.Context, db *sql.DB, out []T, scan func(rowScanner) (T, error),
	what, query string, args ...any) ([]T, error) {
	rows, err := db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	defer rows.Close()
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return out, nil
}
