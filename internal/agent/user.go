package agent

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/sbx-sh/sbx/internal/errdefs"
)

// identity is a user resolved against the sandbox's /etc/passwd and
// /etc/group.
type identity struct {
	Name   string // "" for a numeric uid without a passwd entry
	UID    uint32
	GID    uint32
	Groups []uint32 // supplementary groups, without GID
	Home   string
}

type passwdEntry struct {
	name     string
	uid, gid uint32
	home     string
}

type groupEntry struct {
	name    string
	gid     uint32
	members []string
}

// resolveUser resolves spec, one of "name", "uid", "name:group" or
// "uid:gid" (group as a name or a number), against the passwd and group
// files in etcDir. A numeric uid needs no passwd entry (its gid is then 0
// and its home "/"), as in Docker; a name must exist.
func resolveUser(etcDir, spec string) (identity, error) {
	userPart, groupPart, hasGroup := strings.Cut(spec, ":")
	if userPart == "" || (hasGroup && groupPart == "") {
		return identity{}, errdefs.Publicf(errdefs.ErrInvalidArgument, "invalid user %q: want name, uid or uid:gid", spec)
	}
	users, err := readPasswd(filepath.Join(etcDir, "passwd"))
	if err != nil {
		return identity{}, err
	}
	groups, err := readGroup(filepath.Join(etcDir, "group"))
	if err != nil {
		return identity{}, err
	}

	id := identity{Home: "/"}
	if n, err := strconv.ParseUint(userPart, 10, 32); err == nil {
		id.UID = uint32(n)
		for _, u := range users {
			if u.uid == id.UID {
				id.Name, id.GID, id.Home = u.name, u.gid, u.home
				break
			}
		}
	} else {
		found := false
		for _, u := range users {
			if u.name == userPart {
				id.Name, id.UID, id.GID, id.Home, found = u.name, u.uid, u.gid, u.home, true
				break
			}
		}
		if !found {
			return identity{}, errdefs.Publicf(errdefs.ErrNotFound, "user %q not found in /etc/passwd", userPart)
		}
	}
	if id.Home == "" {
		id.Home = "/"
	}
	if hasGroup {
		if n, err := strconv.ParseUint(groupPart, 10, 32); err == nil {
			id.GID = uint32(n)
		} else {
			found := false
			for _, g := range groups {
				if g.name == groupPart {
					id.GID, found = g.gid, true
					break
				}
			}
			if !found {
				return identity{}, errdefs.Publicf(errdefs.ErrNotFound, "group %q not found in /etc/group", groupPart)
			}
		}
	}
	if id.Name != "" {
		for _, g := range groups {
			if g.gid == id.GID {
				continue
			}
			for _, m := range g.members {
				if m == id.Name {
					id.Groups = append(id.Groups, g.gid)
					break
				}
			}
		}
	}
	return id, nil
}

// readColonFile returns the colon-separated fields of each line of path; a
// missing file is empty (minimal images have no /etc/passwd).
func readColonFile(path string) ([][]string, error) {
	// The sandbox owns these files: not a FIFO (it would block), not
	// /dev/zero (it would never end).
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	data, err := io.ReadAll(io.LimitReader(f, 16<<20))
	if err != nil {
		return nil, err
	}
	var out [][]string
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		out = append(out, strings.Split(line, ":"))
	}
	return out, sc.Err()
}

func readPasswd(path string) ([]passwdEntry, error) {
	lines, err := readColonFile(path)
	if err != nil {
		return nil, err
	}
	var out []passwdEntry
	for _, f := range lines {
		if len(f) < 6 {
			continue
		}
		uid, err1 := strconv.ParseUint(f[2], 10, 32)
		gid, err2 := strconv.ParseUint(f[3], 10, 32)
		if err1 != nil || err2 != nil {
			continue
		}
		out = append(out, passwdEntry{name: f[0], uid: uint32(uid), gid: uint32(gid), home: f[5]})
	}
	return out, nil
}

func readGroup(path string) ([]groupEntry, error) {
	lines, err := readColonFile(path)
	if err != nil {
		return nil, err
	}
	var out []groupEntry
	for _, f := range lines {
		if len(f) < 3 {
			continue
		}
		gid, err := strconv.ParseUint(f[2], 10, 32)
		if err != nil {
			continue
		}
		g := groupEntry{name: f[0], gid: uint32(gid)}
		if len(f) > 3 && f[3] != "" {
			g.members = strings.Split(f[3], ",")
		}
		out = append(out, g)
	}
	return out, nil
}
