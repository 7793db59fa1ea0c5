package main

import (
	"context"
	"database/sql"
	"path/filepath"
	"strings"
	"testing"
)

// A database file as FerretDB 1.24 lays out a collection: its table and _id index.
func ferretLikeDatabase(t *testing.T) (string, *sql.DB) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "app"+dbSuffix)
	db, err := sql.Open("sqlite", "file:"+file+"?_pragma=journal_mode(wal)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	for _, q := range []string{
		`CREATE TABLE "things_1234" (_ferretdb_sjson TEXT NOT NULL CHECK(_ferretdb_sjson != '')) STRICT`,
		`CREATE UNIQUE INDEX "things_1234__id_" ON "things_1234" (_ferretdb_sjson->"_id")`,
		`CREATE INDEX "things_1234_x_1" ON "things_1234" (_ferretdb_sjson->"x")`,
		`INSERT INTO "things_1234" VALUES ('{"_id":"a","x":1}'), ('{"_id":"b","x":2}')`,
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(q, err)
		}
	}
	return file, db
}

func plan(t *testing.T, db *sql.DB) string {
	t.Helper()
	var id, parent, notUsed int
	var detail string
	// the statement FerretDB runs for {_id: "a"} (collection.go, metadata.IDColumn)
	q := `EXPLAIN QUERY PLAN SELECT _ferretdb_sjson FROM "things_1234" WHERE ` + queriedIDKey + ` = ?`
	if err := db.QueryRow(q, `"a"`).Scan(&id, &parent, &notUsed, &detail); err != nil {
		t.Fatal(err)
	}
	return detail
}

func TestRepairPutsTheIDIndexOnTheQueriedExpression(t *testing.T) {
	file, db := ferretLikeDatabase(t)
	if got := plan(t, db); !strings.HasPrefix(got, "SCAN") {
		t.Fatalf("before the repair: %s", got)
	}

	n, err := repairIDIndexes(context.Background(), file)
	if err != nil || n != 1 {
		t.Fatalf("repaired %d, %v; want 1 index (the _id one only)", n, err)
	}
	db.SetMaxIdleConns(0) // a fresh connection: EXPLAIN uses the schema its connection loaded
	if got := plan(t, db); !strings.Contains(got, `USING INDEX things_1234__id_`) {
		t.Fatalf("after the repair: %s", got)
	}
	if _, err := db.Exec(`INSERT INTO "things_1234" VALUES ('{"_id":"a","x":3}')`); err == nil {
		t.Fatal("the repaired index no longer refuses a duplicate _id")
	}
	if n, err := repairIDIndexes(context.Background(), file); err != nil || n != 0 {
		t.Fatalf("a second repair changed %d, %v; want nothing", n, err)
	}
}

func TestRepairNeverCreatesADroppedDatabase(t *testing.T) {
	file := filepath.Join(t.TempDir(), "gone"+dbSuffix)
	if _, err := repairIDIndexes(context.Background(), file); err == nil {
		t.Fatal("no error for a missing file")
	}
	if matches, _ := filepath.Glob(file + "*"); len(matches) != 0 {
		t.Fatalf("created %v", matches)
	}
}
