// The Azure SDK for JavaScript as a client of `tsh proxy azure`, run by tests/tests/azure_cli.rs
// with the printed environment alone (and NODE_PATH pointing at the SDK that
// `cargo xtask deps` installs under target/azure-js).
//
// Usage: node azure_sdk.js SUBSCRIPTION_ID
// Gets an ARM token from ManagedIdentityCredential (App Service endpoint, or IMDS through
// HTTP_PROXY when IDENTITY_ENDPOINT is unset), lists the subscription's virtual machines through
// HTTPS_PROXY, and prints their names, comma-separated and sorted.
"use strict";

const { ManagedIdentityCredential } = require("@azure/identity");
const {
  bearerTokenAuthenticationPolicy,
  createDefaultHttpClient,
  createPipelineFromOptions,
  createPipelineRequest,
} = require("@azure/core-rest-pipeline");

async function main() {
  const subscription = process.argv[2];
  if (!subscription) {
    throw new Error("usage: node azure_sdk.js SUBSCRIPTION_ID");
  }
  const credential = new ManagedIdentityCredential();
  // The default pipeline's proxy policy reads HTTPS_PROXY / HTTP_PROXY / NO_PROXY.
  const pipeline = createPipelineFromOptions({ retryOptions: { maxRetries: 0 } });
  pipeline.addPolicy(
    bearerTokenAuthenticationPolicy({
      credential,
      scopes: "https://management.azure.com/.default",
    }),
  );
  const request = createPipelineRequest({
    url: `https://management.azure.com/subscriptions/${subscription}/providers/Microsoft.Compute/virtualMachines?api-version=2024-07-01`,
    method: "GET",
  });
  const response = await pipeline.sendRequest(createDefaultHttpClient(), request);
  if (response.status !== 200) {
    throw new Error(`ARM answered ${response.status}: ${response.bodyAsText}`);
  }
  const names = JSON.parse(response.bodyAsText).value.map((vm) => vm.name);
  console.log(names.sort().join(","));
}

main().catch((e) => {
  console.error(e && e.stack ? e.stack : String(e));
  process.exit(1);
});
