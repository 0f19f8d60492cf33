'use strict';
// A small Express service: a health check and a route using a local module.
const express = require('express');
const { greet } = require('./lib/greet');

const app = express();
app.get('/healthz', (_req, res) => res.send('ok\n'));
app.get('/hello/:name', (req, res) => res.json({ message: greet(req.params.name) }));

const port = Number(process.env.PORT || 3000);
app.listen(port, '0.0.0.0', () => console.log(`listening on ${port}`));
