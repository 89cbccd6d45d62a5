package sqlite

import (
	"context"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/sbx-sh/sbx/internal/errdefs"
	"github.com/sbx-sh/sbx/internal/store"
)

const sandboxCols = `id, tenant_id, name, image, image_digest, runtime, state, desired,
	env, labels, resources, run_as, entrypoint, cmd, workdir, uid_slot,
	error_reason, exit_code, oom_kills, created_at, updated_at, started_at, network, ip, lifecycle, volumes, public`

// sandboxRow is a Sandbox with its JSON columns encoded.
type sandboxRow struct {
	env, labels, resources, entrypoint, cmd, network, lifecycle, volumes string
}

func encodeSandbox(s store.Sandbox) (sandboxRow, error) {
	var (
		r   sandboxRow
		err error
	)
	nw := s.Network
	nw.IP = "" // in its own column
	for _, f := range []struct {
		dst *string
		v   any
	}{
		{&r.env, s.Env}, {&r.labels, s.Labels}, {&r.resources, s.Resources},
		{&r.entrypoint, s.Entrypoint}, {&r.cmd, s.Cmd}, {&r.network, nw}, {&r.lifecycle, s.Lifecycle}, {&r.volumes, s.Volumes},
	} {
		if *f.dst, err = jsonText(f.v); err != nil {
			return sandboxRow{}, err
		}
	}
	return r, nil
}

func scanSandbox(sc rowScanner) (store.Sandbox, error) {
	var (
		s                         store.Sandbox
		r                         sandboxRow
		exitCode, started         sql.NullInt64
		created, updated, uidSlot int64
		ip                        string
		public                    bool
	)
	err := sc.Scan(&s.ID, &s.TenantID, &s.Name, &s.Image, &s.ImageDigest, &s.Runtime, &s.State, &s.Desired,
		&r.env, &r.labels, &r.resources, &s.User, &r.entrypoint, &r.cmd, &s.Workdir, &uidSlot,
		&s.ErrorReason, &exitCode, &s.OOMKills, &created, &updated, &started, &r.network, &ip, &r.lifecycle, &r.volumes, &public)
	if err != nil {
		return store.Sandbox{}, err
	}
	for _, f := range []struct {
		src string
		v   any
	}{
		{r.env, &s.Env}, {r.labels, &s.Labels}, {r.resources, &s.Resources},
		{r.entrypoint, &s.Entrypoint}, {r.cmd, &s.Cmd}, {r.network, &s.Network}, {r.lifecycle, &s.Lifecycle}, {r.volumes, &s.Volumes},
	} {
		if err := fromJSON(f.src, f.v); err != nil {
			return store.Sandbox{}, fmt.Errorf("sandbox %s: %w", s.ID, err)
		}
	}
	s.UIDSlot = int(uidSlot)
	s.Network.IP = ip
	s.Public = public
	if exitCode.Valid {
		c := int(exitCode.Int64)
		s.ExitCode = &c
	}
	s.CreatedAt = fromNanos(created)
	s.UpdatedAt = fromNanos(updated)
	if started.Valid {
		t := fromNanos(started.Int64)
		s.StartedAt = &t
	}
	return s, nil
}

func nullInt(p *int) sql.NullInt64 {
	if p == nil {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: int64(*p), Valid: true}
}

func nullTime(p *store.Sandbox) sql.NullInt64 {
	if p.StartedAt == nil {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: nanos(*p.StartedAt), Valid: true}
}

// checkLive returns ErrAlreadyExists when another live sandbox holds s's
// name (in its tenant) or its uid slot. It runs inside the write
// transaction, so no other writer can slip in between check and write; the
// unique indexes remain the backstop.
func checkLive(ctx context.Context, tx *sql.Tx, s store.Sandbox) error {
	if s.State == store.StateDestroyed {
		return nil
	}
	var n int
	err := tx.QueryRowContext(ctx, `
		SELECT count(*) FROM sandboxes
		WHERE tenant_id = ? AND name = ? AND state != 'destroyed' AND id != ?`,
		s.TenantID, s.Name, s.ID).Scan(&n)
	if err != nil {
		return err
	}
	if n > 0 {
		return errdefs.Publicf(errdefs.ErrAlreadyExists, "sandbox name %q already exists", s.Name)
	}
	if s.Network.IP != "" {
		err = tx.QueryRowContext(ctx, `
			SELECT count(*) FROM sandboxes
			WHERE ip = ? AND state != 'destroyed' AND id != ?`,
			s.Network.IP, s.ID).Scan(&n)
		if err != nil {
			return err
		}
		if n > 0 {
			return errdefs.Publicf(errdefs.ErrAlreadyExists, "address %s is already in use", s.Network.IP)
		}
	}
	if s.UIDSlot < 0 {
		return nil
	}
	err = tx.QueryRowContext(ctx, `
		SELECT count(*) FROM sandboxes
		WHERE uid_slot = ? AND state != 'destroyed' AND id != ?`,
		s.UIDSlot, s.ID).Scan(&n)
	if err != nil {
		return err
	}
	if n > 0 {
		return errdefs.Publicf(errdefs.ErrAlreadyExists, "uid slot %d is already in use", s.UIDSlot)
	}
	return nil
}

// CreateSandbox inserts s. A zero CreatedAt is set to now, a zero UpdatedAt
// to CreatedAt.
func (db *DB) CreateSandbox(ctx context.Context, s store.Sandbox) error {
	if s.ID == "" {
		return errdefs.Public(errdefs.ErrInvalidArgument, "sandbox id is empty")
	}
	r, err := encodeSandbox(s)
	if err != nil {
		return err
	}
	s.CreatedAt = orNow(s.CreatedAt, db.now())
	s.UpdatedAt = orNow(s.UpdatedAt, s.CreatedAt)
	err = db.write(ctx, func(tx *sql.Tx) error {
		if err := checkLive(ctx, tx, s); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO sandboxes (`+sandboxCols+`)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			s.ID, s.TenantID, s.Name, s.Image, s.ImageDigest, s.Runtime, s.State, s.Desired,
			r.env, r.labels, r.resources, s.User, r.entrypoint, r.cmd, s.Workdir, s.UIDSlot,
			s.ErrorReason, nullInt(s.ExitCode), s.OOMKills, nanos(s.CreatedAt), nanos(s.UpdatedAt), nullTime(&s),
			r.network, s.Network.IP, r.lifecycle, r.volumes, s.Public)
		return err
	})
	if isUnique(err) {
		return errdefs.Publicf(errdefs.ErrAlreadyExists, "sandbox %q already exists", s.Name)
	}
	if err != nil {
		return fmt.Errorf("creating sandbox %s: %w", s.ID, err)
	}
	return nil
}

// GetSandbox returns the sandbox id of the tenant ("" = any).
func (db *DB) GetSandbox(ctx context.Context, tenantID, id string) (store.Sandbox, error) {
	s, err := scanSandbox(db.r.QueryRowContext(ctx,
		`SELECT `+sandboxCols+` FROM sandboxes WHERE id = ? AND (? = '' OR tenant_id = ?)`,
		id, tenantID, tenantID))
	if errors.Is(err, sql.ErrNoRows) {
		return store.Sandbox{}, errdefs.Publicf(errdefs.ErrNotFound, "sandbox %q not found", id)
	}
	if err != nil {
		return store.Sandbox{}, fmt.Errorf("getting sandbox %s: %w", id, err)
	}
	return s, nil
}

// GetSandboxByName returns the tenant's live sandbox with the name. With
// tenantID "" (names are unique per tenant only) the oldest match wins.
func (db *DB) GetSandboxByName(ctx context.Context, tenantID, name string) (store.Sandbox, error) {
	s, err := scanSandbox(db.r.QueryRowContext(ctx, `
		SELECT `+sandboxCols+` FROM sandboxes
		WHERE name = ? AND state != 'destroyed' AND (? = '' OR tenant_id = ?)
		ORDER BY created_at, id LIMIT 1`,
		name, tenantID, tenantID))
	if errors.Is(err, sql.ErrNoRows) {
		return store.Sandbox{}, errdefs.Publicf(errdefs.ErrNotFound, "sandbox %q not found", name)
	}
	if err != nil {
		return store.Sandbox{}, fmt.Errorf("getting sandbox %s: %w", name, err)
	}
	return s, nil
}

// encodeCursor makes the opaque cursor that resumes after s.
func encodeCursor(s store.Sandbox) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(nanos(s.CreatedAt), 10) + ":" + s.ID))
}

func decodeCursor(c string) (created int64, id string, err error) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err == nil {
		ts, rest, ok := strings.Cut(string(b), ":")
		if ok && rest != "" {
			if created, err = strconv.ParseInt(ts, 10, 64); err == nil {
				return created, rest, nil
			}
		}
	}
	return 0, "", errdefs.Public(errdefs.ErrInvalidArgument, "invalid page cursor")
}

// ListSandboxes returns a page of sandboxes matching f, oldest first
// (created_at, then id), and the cursor of the next page ("" on the last).
// Every filter runs in SQL, so each page is full unless it is the last.
func (db *DB) ListSandboxes(ctx context.Context, f store.SandboxFilter) ([]store.Sandbox, string, error) {
	var (
		where []string
		args  []any
	)
	if f.TenantID != "" {
		where = append(where, "tenant_id = ?")
		args = append(args, f.TenantID)
	}
	if len(f.States) > 0 {
		where = append(where, "state IN (?"+strings.Repeat(", ?", len(f.States)-1)+")")
		for _, st := range f.States {
			args = append(args, string(st))
		}
	}
	for k, v := range f.Labels {
		// json_each copes with any key, where a JSON path would need quoting.
		where = append(where, "EXISTS (SELECT 1 FROM json_each(sandboxes.labels) l WHERE l.key = ? AND l.value = ?)")
		args = append(args, k, v)
	}
	if f.Cursor != "" {
		created, id, err := decodeCursor(f.Cursor)
		if err != nil {
			return nil, "", err
		}
		where = append(where, "(created_at > ? OR (created_at = ? AND id > ?))")
		args = append(args, created, created, id)
	}
	q := `SELECT ` + sandboxCols + ` FROM sandboxes`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	limit := clampLimit(f.Limit)
	// One row more than the page tells whether another page follows.
	q += " ORDER BY created_at, id LIMIT ?"
	args = append(args, limit+1)

	out, err := queryAll(ctx, db.r, nil, scanSandbox, "listing sandboxes", q, args...)
	if err != nil {
		return nil, "", err
	}
	if len(out) <= limit {
		return out, "", nil
	}
	out = out[:limit]
	return out, encodeCursor(out[limit-1]), nil
}

// UpdateSandbox replaces every field of the record s.ID except ID, TenantID
// and CreatedAt, and sets UpdatedAt to now. When s.TenantID is set, a record
// of another tenant is ErrNotFound.
func (db *DB) UpdateSandbox(ctx context.Context, s store.Sandbox) error {
	r, err := encodeSandbox(s)
	if err != nil {
		return err
	}
	err = db.write(ctx, func(tx *sql.Tx) error {
		var tenantID string
		err := tx.QueryRowContext(ctx,
			`SELECT tenant_id FROM sandboxes WHERE id = ? AND (? = '' OR tenant_id = ?)`,
			s.ID, s.TenantID, s.TenantID).Scan(&tenantID)
		if errors.Is(err, sql.ErrNoRows) {
			return errdefs.Publicf(errdefs.ErrNotFound, "sandbox %q not found", s.ID)
		}
		if err != nil {
			return err
		}
		s.TenantID = tenantID
		if err := checkLive(ctx, tx, s); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `
			UPDATE sandboxes SET
				name = ?, image = ?, image_digest = ?, runtime = ?, state = ?, desired = ?,
				env = ?, labels = ?, resources = ?, run_as = ?, entrypoint = ?, cmd = ?,
				workdir = ?, uid_slot = ?, error_reason = ?, exit_code = ?, oom_kills = ?,
				updated_at = ?, started_at = ?, network = ?, ip = ?, lifecycle = ?, volumes = ?, public = ?
			WHERE id = ?`,
			s.Name, s.Image, s.ImageDigest, s.Runtime, s.State, s.Desired,
			r.env, r.labels, r.resources, s.User, r.entrypoint, r.cmd,
			s.Workdir, s.UIDSlot, s.ErrorReason, nullInt(s.ExitCode), s.OOMKills,
			nanos(db.now()), nullTime(&s), r.network, s.Network.IP, r.lifecycle, r.volumes, s.Public, s.ID)
		return err
	})
	if isUnique(err) {
		return errdefs.Publicf(errdefs.ErrAlreadyExists, "sandbox %q already exists", s.Name)
	}
	if err != nil {
		return fmt.Errorf("updating sandbox %s: %w", s.ID, err)
	}
	return nil
}

// DeleteSandbox removes the record and its events.
func (db *DB) DeleteSandbox(ctx context.Context, id string) error {
	err := db.write(ctx, func(tx *sql.Tx) error {
		// The foreign key cascades too; deleting explicitly keeps this
		// correct even on a connection where foreign keys were left off.
		if _, err := tx.ExecContext(ctx, `DELETE FROM events WHERE sandbox_id = ?`, id); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM sandboxes WHERE id = ?`, id)
		if err != nil {
			return err
		}
		return checkAffected(res, "sandbox %q not found", id)
	})
	if err != nil {
		return fmt.Errorf("deleting sandbox %s: %w", id, err)
	}
	return nil
}

// UsedUIDSlots lists the slots held by live sandboxes, ascending.
func (db *DB) UsedUIDSlots(ctx context.Context) ([]int, error) {
	rows, err := db.r.QueryContext(ctx,
		`SELECT uid_slot FROM sandboxes WHERE state != 'destroyed' AND uid_slot >= 0 ORDER BY uid_slot`)
	if err != nil {
		return nil, fmt.Errorf("listing uid slots: %w", err)
	}
	defer rows.Close()
	var out []int
	for rows.Next() {
		var n int
		if err := rows.Scan(&n); err != nil {
			return nil, fmt.Errorf("listing uid slots: %w", err)
		}
		out = append(out, n)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing uid slots: %w", err)
	}
	return out, nil
}

// UsedIPs lists the network addresses held by live sandboxes.
func (db *DB) UsedIPs(ctx context.Context) ([]string, error) {
	rows, err := db.r.QueryContext(ctx,
		`SELECT ip FROM sandboxes WHERE state != 'destroyed' AND ip != '' ORDER BY ip`)
	if err != nil {
		return nil, fmt.Errorf("listing addresses: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var ip string
		if err := rows.Scan(&ip); err != nil {
			return nil, fmt.Errorf("listing addresses: %w", err)
		}
		out = append(out, ip)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing addresses: %w", err)
	}
	return out, nil
}

// Events.

// AddEvent appends e to its sandbox's events and returns it with Seq set,
// TenantID set to the sandbox's tenant, and a zero Time set to now. The
// sandbox must exist (and belong to e.TenantID when that is set), else
// ErrNotFound.
func (db *DB) AddEvent(ctx context.Context, e store.Event) (store.Event, error) {
	e.Time = orNow(e.Time, db.now())
	err := db.write(ctx, func(tx *sql.Tx) error {
		err := tx.QueryRowContext(ctx, `
			INSERT INTO events (sandbox_id, tenant_id, type, from_state, to_state, message, time)
			SELECT id, tenant_id, ?, ?, ?, ?, ? FROM sandboxes
			WHERE id = ? AND (? = '' OR tenant_id = ?)
			RETURNING seq, tenant_id`,
			e.Type, e.From, e.To, e.Message, nanos(e.Time),
			e.SandboxID, e.TenantID, e.TenantID).Scan(&e.Seq, &e.TenantID)
		if errors.Is(err, sql.ErrNoRows) {
			return errdefs.Publicf(errdefs.ErrNotFound, "sandbox %q not found", e.SandboxID)
		}
		return err
	})
	if err != nil {
		return store.Event{}, fmt.Errorf("adding event to sandbox %s: %w", e.SandboxID, err)
	}
	e.Time = e.Time.UTC()
	return e, nil
}

// ListEvents returns the sandbox's events with Seq > afterSeq, oldest
// first, at most limit (0 = 100, capped at 1000). A missing sandbox, or one
// of another tenant, is ErrNotFound.
func (db *DB) ListEvents(ctx context.Context, tenantID, sandboxID string, afterSeq int64, limit int) ([]store.Event, error) {
	// One read transaction, so the existence check and the list see the
	// same snapshot.
	tx, err := db.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("listing events: %w", err)
	}
	defer tx.Rollback()
	var exists bool
	err = tx.QueryRowContext(ctx,
		`SELECT EXISTS (SELECT 1 FROM sandboxes WHERE id = ? AND (? = '' OR tenant_id = ?))`,
		sandboxID, tenantID, tenantID).Scan(&exists)
	if err != nil {
		return nil, fmt.Errorf("listing events: %w", err)
	}
	if !exists {
		return nil, errdefs.Publicf(errdefs.ErrNotFound, "sandbox %q not found", sandboxID)
	}
	rows, err := tx.QueryContext(ctx, `
		SELECT seq, sandbox_id, tenant_id, type, from_state, to_state, message, time
		FROM events WHERE sandbox_id = ? AND seq > ? ORDER BY seq LIMIT ?`,
		sandboxID, afterSeq, clampLimit(limit))
	if err != nil {
		return nil, fmt.Errorf("listing events: %w", err)
	}
	defer rows.Close()
	var out []store.Event
	for rows.Next() {
		var (
			e  store.Event
			ts int64
		)
		if err := rows.Scan(&e.Seq, &e.SandboxID, &e.TenantID, &e.Type, &e.From, &e.To, &e.Message, &ts); err != nil {
			return nil, fmt.Errorf("listing events: %w", err)
		}
		e.Time = fromNanos(ts)
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing events: %w", err)
	}
	return out, nil
}
