// Command ferretdb runs FerretDB (MongoDB wire protocol, SQLite storage) as the
// local stand-in for MongoDB on machines without Docker.
//
// It embeds the library package github.com/FerretDB/FerretDB/ferretdb instead of
// building upstream's cmd/ferretdb (which needs generated version files).
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
	"flag"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/FerretDB/FerretDB/ferretdb"
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
	if err := f.Run(ctx); err != nil {
		return err
	}
	logger.Info("ferretdb stopped")
	return nil
}
