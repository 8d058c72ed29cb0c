package schemas

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func mustKey(t testing.TB, uri string) Key {
	t.Helper()
	k, err := ParseKey(uri)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestEmbedded checks that every schema file in the source tree is bundled.
func TestEmbedded(t *testing.T) {
	var onDisk []Key
	err := fs.WalkDir(os.DirFS("."), ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path == "testdata" {
				return fs.SkipDir
			}
			return nil
		}
		if strings.Count(path, "/") == 3 {
			onDisk = append(onDisk, mustKey(t, "iglu:"+path))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(onDisk, Key.compare)
	if diff := cmp.Diff(onDisk, Keys()); diff != "" {
		t.Errorf("Keys() differs from the files on disk (-disk +Keys):\n%s", diff)
	}
	for _, k := range onDisk {
		want, err := os.ReadFile(k.Path())
		if err != nil {
			t.Fatal(err)
		}
		got, ok := Raw(k)
		if !ok || !bytes.Equal(got, want) {
			t.Errorf("Raw(%s) differs from the file", k)
		}
		if !Has(k) {
			t.Errorf("Has(%s) = false", k)
		}
	}
}

func TestKeysSortedAndCopied(t *testing.T) {
	ks := Keys()
	if !slices.IsSortedFunc(ks, Key.compare) {
		t.Errorf("Keys() is not sorted: %v", ks)
	}
	ks[0] = Key{}
	if Keys()[0] == (Key{}) {
		t.Error("Keys() shares its backing array with the caller")
	}
	// Numeric, not lexical, version order.
	a := Key{Vendor: "v", Name: "n", Format: "f", Model: 1, Addition: 2}
	b := Key{Vendor: "v", Name: "n", Format: "f", Model: 1, Addition: 10}
	if a.compare(b) >= 0 {
		t.Error("1-0-2 does not sort before 1-0-10")
	}
}

func TestRawAndHas(t *testing.T) {
	k := mustKey(t, "iglu:com.snowplowanalytics.sauna.responders/SlackConfig/avro/1-0-0")
	b, ok := Raw(k)
	if !ok || !json.Valid(b) {
		t.Fatalf("Raw(%s) = %q, %v", k, b, ok)
	}
	b[0] = 'X'
	if again, _ := Raw(k); again[0] == 'X' {
		t.Error("Raw returns the bundled bytes themselves; callers could corrupt them")
	}
	missing := mustKey(t, "iglu:com.snowplowanalytics.sauna.responders/SlackConfig/avro/1-0-9")
	if Has(missing) {
		t.Errorf("Has(%s) = true", missing)
	}
	if b, ok := Raw(missing); ok || b != nil {
		t.Errorf("Raw(%s) = %q, %v", missing, b, ok)
	}
}

// TestPublishedUnchanged guards the rule that a published schema is never
// edited: testdata/published.sha256 holds the digests of the copies taken
// from Iglu Central and Sauna's source tree.
func TestPublishedUnchanged(t *testing.T) {
	f, err := os.Open("testdata/published.sha256")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		sum, path, ok := strings.Cut(sc.Text(), "  ")
		if !ok {
			t.Fatalf("bad line %q", sc.Text())
		}
		n++
		b, ok := Raw(mustKey(t, "iglu:"+path))
		if !ok {
			t.Errorf("published schema %s is not bundled", path)
			continue
		}
		got := sha256.Sum256(b)
		if hex.EncodeToString(got[:]) != sum {
			t.Errorf("published schema %s was modified; add a new version instead", path)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if n != 23 {
		t.Errorf("published.sha256 lists %d schemas, want 23", n)
	}
}
