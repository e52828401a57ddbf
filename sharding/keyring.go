package sharding

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/memberlist"
)

// A gossip keyring file holds one or more keys, one per line, each 16, 24 or
// 32 bytes base64-encoded; blank lines and lines starting with # are ignored.
// The first key encrypts everything this member sends; every key listed is
// accepted on receipt. A file holding exactly one raw (not base64) key of a
// valid length is read as that one key, as before keyrings existed.
//
// Rotating the key without splitting the cluster takes three steps, each
// rolled out to every member (one at a time is fine) before the next starts:
//
//  1. add the new key as the second line: members still encrypt with the old
//     key but accept the new one;
//  2. swap the lines (new key first): members encrypt with the new key, and
//     every member still accepts both;
//  3. remove the old key.
//
// A running member re-reads the file every KeyringReloadInterval (Kubernetes
// updates a mounted Secret in place), so no restart is needed.

// readKeyring reads a keyring file; see above for the format.
func readKeyring(path string) ([][]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read secret key: %w", err)
	}
	var keys [][]byte
	var decErr error
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		key, err := base64.StdEncoding.DecodeString(line)
		switch {
		case err != nil:
			decErr = fmt.Errorf("line %d is not base64: %w", i+1, err)
		case !validKeyLen(len(key)):
			decErr = fmt.Errorf("line %d decodes to %d bytes, want 16, 24 or 32", i+1, len(key))
		}
		if decErr != nil {
			break
		}
		if !containsKey(keys, key) {
			keys = append(keys, key)
		}
	}
	switch {
	case decErr == nil && len(keys) > 0:
		return keys, nil
	case validKeyLen(len(b)):
		return [][]byte{b}, nil // one raw key
	case decErr != nil:
		return nil, fmt.Errorf("secret key file %s: %w (or give exactly one raw key of 16, 24 or 32 bytes)", path, decErr)
	default:
		return nil, fmt.Errorf("secret key file %s holds no key", path)
	}
}

// newKeyring builds memberlist's keyring from keys, the first one primary.
func newKeyring(keys [][]byte) (*memberlist.Keyring, error) {
	if len(keys) == 0 {
		return nil, errors.New("no gossip key")
	}
	return memberlist.NewKeyring(keys, keys[0])
}

// updateKeyring makes kr hold exactly keys with keys[0] as the primary key.
// It reports whether anything changed. New keys are installed before the
// primary moves and old ones are removed last, so that at no point is a
// key that peers may still use missing.
func updateKeyring(kr *memberlist.Keyring, keys [][]byte) (bool, error) {
	if len(keys) == 0 {
		return false, errors.New("no gossip key")
	}
	have := kr.GetKeys() // primary first, both lists free of duplicates
	if len(have) == len(keys) && bytes.Equal(have[0], keys[0]) && !slices.ContainsFunc(keys, func(k []byte) bool {
		return !containsKey(have, k)
	}) {
		return false, nil
	}
	for _, k := range keys {
		if err := kr.AddKey(k); err != nil {
			return false, fmt.Errorf("add gossip key: %w", err)
		}
	}
	if err := kr.UseKey(keys[0]); err != nil {
		return false, fmt.Errorf("use gossip key: %w", err)
	}
	for _, k := range have {
		if !containsKey(keys, k) {
			if err := kr.RemoveKey(k); err != nil {
				return false, fmt.Errorf("remove gossip key: %w", err)
			}
		}
	}
	return true, nil
}

// keyringState is a running member's keyring and where it is read from.
type keyringState struct {
	path string
	ring *memberlist.Keyring
	mtx  sync.Mutex // serialises reloads

	reloads, failures atomic.Int64
}

// reload re-reads the keyring file and installs what changed. A file that
// cannot be read or holds no valid key leaves the keyring as it is.
func (k *keyringState) reload(logger *slog.Logger) {
	k.mtx.Lock()
	defer k.mtx.Unlock()
	keys, err := readKeyring(k.path)
	if err == nil {
		var changed bool
		if changed, err = updateKeyring(k.ring, keys); err == nil {
			if changed {
				k.reloads.Add(1)
				logger.Info("Gossip keyring reloaded", "keys", len(keys))
			}
			return
		}
	}
	k.failures.Add(1)
	logger.Error("Gossip keyring reload failed, keeping the current keys", "file", k.path, "err", err)
}

// size returns the number of installed keys (0 when k is nil: no encryption).
func (k *keyringState) size() int {
	if k == nil {
		return 0
	}
	return len(k.ring.GetKeys())
}

func containsKey(keys [][]byte, k []byte) bool {
	return slices.ContainsFunc(keys, func(x []byte) bool { return bytes.Equal(x, k) })
}
