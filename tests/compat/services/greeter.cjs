// Official TypeScript SDK (@restatedev/restate-sdk 1.17.2) services: a Greeter and a Counter object.
// Plain CommonJS so that NODE_PATH (set by tests/support NodeService) resolves the SDK; the
// Promise.withResolvers polyfill for Node 20 is preloaded by NodeService as well.
// Service names get the SERVICE_PREFIX env var in front; the port comes from PORT.
if (typeof Promise.withResolvers !== "function") {
  require("../../support/node_preload.cjs");
}
const restate = require("@restatedev/restate-sdk");

const prefix = process.env.SERVICE_PREFIX ?? "";

const greeter = restate.service({
  name: `${prefix}Greeter`,
  handlers: {
    greet: async (ctx, name) => ctx.run("greeting", () => `Hello, ${name}!`),
  },
});

const counter = restate.object({
  name: `${prefix}Counter`,
  handlers: {
    add: async (ctx, delta) => {
      const value = ((await ctx.get("count")) ?? 0) + delta;
      ctx.set("count", value);
      return value;
    },
    get: restate.handlers.object.shared(async (ctx) => (await ctx.get("count")) ?? 0),
  },
});

restate.serve({ services: [greeter, counter], port: Number(process.env.PORT ?? 9080) });
