// Command server is a small HTTP service built to a static binary in a scratch image.
package main

import (
	"encoding/json"
	"log"
	"net/http"
	"strings"

	"example.com/realworld/server/internal/greet"
)

func main() {
	http.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte("ok\n"))
	})
	http.HandleFunc("/hello/", func(w http.ResponseWriter, r *http.Request) {
		name := strings.TrimPrefix(r.URL.Path, "/hello/")
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]string{"message": greet.Greet(name)})
	})
	log.Fatal(http.ListenAndServe("0.0.0.0:8080", nil))
}
