// A contact-center agent's TaskRouter Worker, connected with a token from the broker:
//   npm install twilio-taskrouter
//   BROKER_URL=... SESSION_TOKEN=... node examples/web/taskrouter-worker.mjs
// The broker's policy gives the grant (`task_router = { workspace = "WS...", worker = ...}`):
// the workspace, and the Worker that belongs to the signed-in agent. The app asks only for
// `{ task_router: {} }`; it cannot name another Worker. It prints one JSON line with what
// the SDK read from the token, then waits for the Worker to be ready (Ctrl-C ends it).
import TaskRouter from "twilio-taskrouter"; // a CommonJS module: its default export
import { TokenClient, wireTaskRouterWorker } from "./token-client.mjs";

const { Worker, Workspace } = TaskRouter;

const tokens = new TokenClient({
  brokerUrl: process.env.BROKER_URL,
  getSessionToken: async () => process.env.SESSION_TOKEN,
  grants: { task_router: {} },
});
const first = await tokens.start();

// The SDK's own reading of the token (no request to Twilio): its workspace and Worker.
const { workspaceSid, workerSid, role } = new Workspace(first.token);
console.log(JSON.stringify({ workspaceSid, workerSid, role }));

const options = { logLevel: "error" };
if (process.env.TASKROUTER_EVENT_BRIDGE) {
  // Tests only: Twilio's event bridge stands somewhere else.
  options.ebServer = `${process.env.TASKROUTER_EVENT_BRIDGE}/v1/wschannels`;
  options.wsServer = `${process.env.TASKROUTER_EVENT_BRIDGE.replace(/^http/, "ws")}/v1/wschannels`;
}
const worker = new Worker(first.token, options);
wireTaskRouterWorker(worker, tokens);
worker.on("ready", (ready) => console.log(JSON.stringify({ ready: ready.sid })));
worker.on("error", (error) => console.log(JSON.stringify({ error: error.message })));
if (process.env.EXIT_AFTER_MS) {
  setTimeout(() => {
    tokens.stop();
    worker.disconnect();
    process.exit(0);
  }, Number(process.env.EXIT_AFTER_MS));
}
