// Preloaded into every Node service (node --require): Node 20 lacks Promise.withResolvers,
// which the official TypeScript SDK 1.17 uses.
if (typeof Promise.withResolvers !== "function") {
  Promise.withResolvers = function withResolvers() {
    let resolve;
    let reject;
    const promise = new Promise((res, rej) => {
      resolve = res;
      reject = rej;
    });
    return { promise, resolve, reject };
  };
}
