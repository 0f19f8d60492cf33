"""A small Flask service: a health check and a JSON greeting."""
from flask import Flask, jsonify

from greeting import greet

app = Flask(__name__)


@app.get("/healthz")
def healthz():
    return "ok\n"


@app.get("/hello/<name>")
def hello(name):
    return jsonify(message=greet(name))
