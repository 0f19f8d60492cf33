"""A stdlib-only HTTP service whose files were written by Dockerfile heredocs."""
import configparser
import http.server
import pathlib

CFG = configparser.ConfigParser()
CFG.read("/etc/web/settings.ini")
BANNER = pathlib.Path("/srv/static/banner.txt")


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"ok\n" if self.path == "/healthz" else BANNER.read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


if __name__ == "__main__":
    port = CFG.getint("server", "port")
    http.server.ThreadingHTTPServer(("0.0.0.0", port), Handler).serve_forever()
