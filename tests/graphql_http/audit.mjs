// Runs graphql-http's GraphQL-over-HTTP audit against the server at the URL given as the only
// argument (e.g. http://127.0.0.1:8000/graphql) and prints its results as one JSON array:
// {id, name, status ("ok", "warn", "error" or "notice"), reason?, response?} each, where response
// is the status, content type and body of the answer an audit that did not pass refused.
import { auditServer } from 'graphql-http';

const url = process.argv[2];
if (!url) {
  console.error('usage: node audit.mjs <url of the GraphQL endpoint>');
  process.exit(2);
}

async function describe(response) {
  if (!response) return undefined;
  let body;
  try {
    body = await response.text();
  } catch {
    body = '(already read by the audit)';
  }
  return {
    status: response.status,
    contentType: response.headers.get('content-type'),
    body: body.slice(0, 500),
  };
}

const results = await auditServer({ url });
const report = await Promise.all(
  results.map(async ({ id, name, status, reason, response }) =>
    status === 'ok' ? { id, name, status } : { id, name, status, reason, response: await describe(response) },
  ),
);
console.log(JSON.stringify(report, null, 2));
