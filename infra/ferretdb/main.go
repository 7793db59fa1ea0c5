// Command ferretdb runs FerretDB (MongoDB wire protocol, SQLite storage) as the
// local stand-in for MongoDB on machines without Docker.
//
// It embeds the library package github.com/FerretDB/FerretDB/ferretdb instead of
// building upstream's cmd/ferretdb (which needs generated version files), and
// repairs the SQLite _id indexes so that lookups by _id use them (see idindex below).
//
// Usage:
//
//	ferretdb [-listen 127.0.0.1:27017] [-dir ./.local/ferretdb] [-log-level info]
//
// Environment variables FERRETDB_LISTEN, FERRETDB_DIR and FERRETDB_LOG_LEVEL set
// the defaults of the matching flags. SIGINT/SIGTERM stop the server cleanly.
package main

import (
	"context"
	"database/sql"
	"flag"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/FerretDB/FerretDB/ferretdb"
	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/mongo"
	"go.mongodb.org/mongo-driver/mongo/options"
	_ "modernc.org/sqlite" // the driver FerretDB uses, for the _id index repair
)

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func main() {
	listen := flag.String("listen", envOr("FERRETDB_LISTEN", "127.0.0.1:27017"), "TCP address to listen on")
	dir := flag.String("dir", envOr("FERRETDB_DIR", filepath.Join(".local", "ferretdb")), "directory for the SQLite databases (created if missing)")
	logLevel := flag.String("log-level", envOr("FERRETDB_LOG_LEVEL", "info"), "log level: debug, info, warn or error")
	flag.Parse()

	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(os.Stderr, "ferretdb: bad -log-level %q: %v\n", *logLevel, err)
		os.Exit(2)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	if err := run(*listen, *dir, logger); err != nil {
		logger.Error("ferretdb failed", "error", err)
		os.Exit(1)
	}
}

func run(listen, dir string, logger *slog.Logger) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return fmt.Errorf("resolve data dir: %w", err)
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}

	// Before FerretDB opens the databases, so that rebuilding a large index keeps no
	// client waiting.
	repairExisting(abs, logger)

	// The SQLite handler wants a "file:" URI naming an existing directory and ending with "/".
	path := filepath.ToSlash(abs)
	if !strings.HasSuffix(path, "/") {
		path += "/"
	}
	sqliteURL := (&url.URL{Scheme: "file", Path: path}).String()

	f, err := ferretdb.New(&ferretdb.Config{
		Listener:  ferretdb.ListenerConfig{TCP: listen},
		Logger:    logger,
		Handler:   "sqlite",
		SQLiteURL: sqliteURL,
	})
	if err != nil {
		return err
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	logger.Info("ferretdb starting", "uri", f.MongoDBURI(), "sqlite", sqliteURL)
	go watchNewCollections(ctx, f.MongoDBURI(), abs, logger)
	if err := f.Run(ctx); err != nil {
		return err
	}
	logger.Info("ferretdb stopped")
	return nil
}

// --- idindex ---------------------------------------------------------------------------
//
// FerretDB 1.24 on SQLite keeps each document as JSON in the column _ferretdb_sjson and
// creates every collection's unique _id index on _ferretdb_sjson->"_id", but its lookups,
// updates and deletes by _id compare _ferretdb_sjson->'$._id' (metadata.IDColumn). Both
// expressions yield the same value, yet SQLite uses an index on an expression only for that
// very expression, so each of those statements reads the whole table. The launcher
// re-creates each such index, under the same name and still unique, on the expression the
// statements use. FerretDB reads index names from its own metadata, never their SQL, so it
// is none the wiser. This makes a find, findAndModify, update or delete whose filter is
// exactly {_id: <ObjectId or string>} an index lookup; FerretDB pushes no other filter,
// no sort and no count down to SQLite, so no other index could help it.

const (
	createdIDKey = `(_ferretdb_sjson->"_id")` // how FerretDB's CREATE INDEX ends
	queriedIDKey = `_ferretdb_sjson->'$._id'` // what its statements compare
	dbSuffix     = ".sqlite"                  // FerretDB's file per database
	watchEvery   = 2 * time.Second
)

// repairIDIndexes re-creates the _id indexes of one database file on the queried
// expression, all in one transaction; it returns how many it changed.
func repairIDIndexes(ctx context.Context, file string) (int, error) {
	// mode=rw: a database dropped meanwhile is not created again; the write lock is taken
	// at BEGIN (a deferred one could not be upgraded after another writer's commit) and
	// waited for like FerretDB waits for it.
	dsn := (&url.URL{Scheme: "file", Opaque: filepath.ToSlash(file),
		RawQuery: "mode=rw&_txlock=immediate&_pragma=busy_timeout(10000)"}).String()
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return 0, err
	}
	defer db.Close()

	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit

	type index struct{ name, table string }
	var stale []index
	rows, err := tx.QueryContext(ctx, `SELECT name, tbl_name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL`)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	for rows.Next() {
		var name, table, ddl string
		if err := rows.Scan(&name, &table, &ddl); err != nil {
			return 0, err
		}
		if strings.HasPrefix(ddl, "CREATE UNIQUE INDEX ") && strings.HasSuffix(ddl, createdIDKey) {
			stale = append(stale, index{name, table})
		}
	}
	if err := rows.Err(); err != nil {
		return 0, err
	}
	rows.Close() // before changing the schema it reads

	for _, ix := range stale {
		if _, err := tx.ExecContext(ctx, "DROP INDEX "+quoteIdent(ix.name)); err != nil {
			return 0, err
		}
		create := fmt.Sprintf("CREATE UNIQUE INDEX %s ON %s (%s)", quoteIdent(ix.name), quoteIdent(ix.table), queriedIDKey)
		if _, err := tx.ExecContext(ctx, create); err != nil {
			return 0, err
		}
	}
	return len(stale), tx.Commit()
}

func quoteIdent(name string) string {
	return `"` + strings.ReplaceAll(name, `"`, `""`) + `"`
}

// repairExisting repairs every database in dir while no one else has it open.
func repairExisting(dir string, logger *slog.Logger) {
	files, _ := filepath.Glob(filepath.Join(dir, "*"+dbSuffix))
	started := time.Now()
	total := 0
	for _, file := range files {
		n, err := repairIDIndexes(context.Background(), file)
		if err != nil {
			logger.Warn("ferretdb: could not repair the _id indexes", "file", file, "error", err)
		}
		total += n
	}
	if total > 0 {
		logger.Info("ferretdb: _id indexes now on the queried expression", "indexes", total,
			"elapsed", time.Since(started).Round(time.Millisecond))
	}
}

// watchNewCollections repairs the _id index of every collection created while FerretDB runs,
// within watchEvery. FerretDB has no hook for that, so the launcher asks it for the
// collections of each database file (listCollections reads its in-memory registry) and
// opens a file only when one of them is new to it (a collection's UUID changes when it is
// dropped and created again). That connection is in FerretDB's process, so SQLite's locks
// treat it like one of FerretDB's own; it lives for one short transaction per new collection.
func watchNewCollections(ctx context.Context, uri, dir string, logger *slog.Logger) {
	client, err := mongo.Connect(ctx, options.Client().ApplyURI(uri).SetDirect(true).
		SetAppName("launcher-id-index"))
	if err != nil {
		logger.Warn("ferretdb: not repairing the _id indexes of new collections", "error", err)
		return
	}
	defer client.Disconnect(context.Background()) //nolint:errcheck // at exit

	checked := map[string]bool{} // database/collection/UUID
	ticker := time.NewTicker(watchEvery)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		checked = repairNew(ctx, client, dir, checked, logger)
	}
}

// repairNew checks each database with a collection not in checked; it returns the
// collections that exist now and were checked (so dropped ones are forgotten).
func repairNew(ctx context.Context, client *mongo.Client, dir string, checked map[string]bool,
	logger *slog.Logger) map[string]bool {
	now := map[string]bool{}
	files, _ := filepath.Glob(filepath.Join(dir, "*"+dbSuffix))
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), dbSuffix)
		specs, err := client.Database(name).ListCollectionSpecifications(ctx, bson.D{})
		if err != nil {
			continue // dropped meanwhile, or FerretDB busy: next time
		}
		var fresh []string
		for _, spec := range specs {
			key := name + "/" + spec.Name
			if spec.UUID != nil {
				key += fmt.Sprintf("/%x", spec.UUID.Data)
			}
			if checked[key] {
				now[key] = true
			} else {
				fresh = append(fresh, key)
			}
		}
		if len(fresh) == 0 {
			continue
		}
		n, err := repairIDIndexes(ctx, file)
		if err != nil {
			if ctx.Err() == nil {
				logger.Warn("ferretdb: could not repair the _id indexes", "database", name, "error", err)
			}
			continue // tried again next time
		}
		for _, key := range fresh {
			now[key] = true
		}
		if n > 0 {
			logger.Debug("ferretdb: _id indexes now on the queried expression", "database", name, "indexes", n)
		}
	}
	return now
}
