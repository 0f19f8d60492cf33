// Command api serves the rendered static site and a JSON status.
package main

import (
	"encoding/json"
	"flag"
	"log"
	"net/http"
)

func main() {
	root := flag.String("root", "/srv/public", "static files")
	flag.Parse()
	mux := http.NewServeMux()
	mux.HandleFunc("/api/status", func(w http.ResponseWriter, _ *http.Request) {
		json.NewEncoder(w).Encode(map[string]string{"status": "up"})
	})
	mux.Handle("/", http.FileServer(http.Dir(*root)))
	log.Fatal(http.ListenAndServe("0.0.0.0:8080", mux))
}
