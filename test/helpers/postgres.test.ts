import { existsSync } from "node:fs";
import pg from "pg";
import { expect, it } from "vitest";
import { startPostgres } from "./postgres.js";

async function query(url: string, text: string): Promise<pg.QueryResult> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await client.query(text);
  } finally {
    await client.end();
  }
}

it("starts a loopback PostgreSQL with isolated databases, and stop() takes it all away", async () => {
  const server = await startPostgres();
  expect(new URL(server.url).hostname).toBe("127.0.0.1");

  const other = await server.createDatabase();
  expect(other).not.toBe(server.url);
  await query(server.url, "create table t (x int)");
  // The table exists where it was made and not in the other database.
  expect((await query(server.url, "select count(*)::int as n from t")).rows[0].n).toBe(0);
  await expect(query(other, "select * from t")).rejects.toThrow(/does not exist/);

  const { rows } = await query(server.url, "show data_directory");
  const dataDirectory = rows[0].data_directory as string;
  expect(existsSync(dataDirectory)).toBe(true);

  await server.stop();
  expect(existsSync(dataDirectory)).toBe(false);
  await expect(query(server.url, "select 1")).rejects.toThrow();
});
