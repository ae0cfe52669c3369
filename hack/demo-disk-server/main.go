// Command demo-disk-server serves the files of one directory over plain HTTP,
// with Range requests (http.ServeContent), as a web server holding disk
// images would. The local cluster runs it with the demo disk for the
// README's quickstart import: GET /demo-disk.qcow2.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"log"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"syscall"
	"time"
)

func main() {
	addr := flag.String("addr", ":8080", "Address to listen on.")
	dir := flag.String("dir", "/srv", "Directory whose files are served, by name.")
	flag.Parse()
	if err := run(*addr, *dir); err != nil {
		log.Fatalf("demo-disk-server: %v", err)
	}
}

func run(addr, dir string) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	srv := &http.Server{Addr: addr, Handler: newHandler(root), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	}()
	log.Printf("serving %s on %s", dir, addr)
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// newHandler serves each regular file at the top of root at /NAME, lists
// their names at /, and answers /healthz. os.Root keeps every open inside
// the directory, symlinks included.
func newHandler(root *os.Root) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		entries, err := fs.ReadDir(root.FS(), ".")
		if err != nil {
			http.Error(w, "reading the directory failed", http.StatusInternalServerError)
			return
		}
		var names []string
		for _, e := range entries {
			if e.Type().IsRegular() {
				names = append(names, e.Name())
			}
		}
		sort.Strings(names)
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		for _, name := range names {
			fmt.Fprintln(w, name)
		}
	})
	mux.HandleFunc("GET /{name}", func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		f, err := root.Open(name)
		if err != nil {
			http.NotFound(w, r)
			return
		}
		defer f.Close()
		info, err := f.Stat()
		if err != nil || !info.Mode().IsRegular() {
			http.NotFound(w, r)
			return
		}
		// Range, If-Range, HEAD and the content type, as a file server does.
		http.ServeContent(w, r, name, info.ModTime(), f)
	})
	return mux
}
