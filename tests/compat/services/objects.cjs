// Official TypeScript SDK (@restatedev/restate-sdk 1.17.2) Virtual Objects mirroring objects.py:
// TsTally (read, step, write counter) and TsStore (state_keys / clear / clearAll), so the same
// scenarios run against both SDKs. CommonJS so NODE_PATH resolves the SDK; the port comes from PORT.
if (typeof Promise.withResolvers !== "function") {
  require("../../support/node_preload.cjs");
}
const restate = require("@restatedev/restate-sdk");

const shared = restate.handlers.object.shared;

const tally = restate.object({
  name: "TsTally",
  handlers: {
    add: async (ctx, delta) => {
      const current = (await ctx.get("count")) ?? 0;
      await ctx.run("step", () => undefined);
      ctx.set("count", current + delta);
      return current + delta;
    },
    get: shared(async (ctx) => (await ctx.get("count")) ?? 0),
  },
});

const sortedKeys = async (ctx) => (await ctx.stateKeys()).sort();

const store = restate.object({
  name: "TsStore",
  handlers: {
    put: async (ctx, entries) => {
      for (const [key, value] of Object.entries(entries)) ctx.set(key, value);
    },
    clear: async (ctx, key) => ctx.clear(key),
    clearAll: async (ctx) => ctx.clearAll(),
    keys: shared(async (ctx) => sortedKeys(ctx)),
    dump: shared(async (ctx) => {
      const out = {};
      for (const key of await sortedKeys(ctx)) out[key] = await ctx.get(key);
      return out;
    }),
    script: async (ctx, entries) => {
      const seen = { before: await sortedKeys(ctx) };
      for (const [key, value] of Object.entries(entries)) ctx.set(key, value);
      seen.after_set = await sortedKeys(ctx);
      const first = Object.keys(entries).sort()[0];
      ctx.clear(first);
      seen.after_clear = await sortedKeys(ctx);
      seen.cleared_value = await ctx.get(first);
      ctx.clearAll();
      seen.after_clear_all = await sortedKeys(ctx);
      ctx.set("last", "kept");
      seen.final = await sortedKeys(ctx);
      return seen;
    },
  },
});

restate.serve({ services: [tally, store], port: Number(process.env.PORT ?? 9080) });
