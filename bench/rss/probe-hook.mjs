// The module hook of probe.mjs: reports each module loaded (not `node:`) to the main thread.
let port;
export function initialize(data) {
  port = data.port;
}
export async function load(url, context, next) {
  if (!url.startsWith("node:")) port.postMessage(url);
  return next(url, context);
}
