//! Token-cache hit path (target: at most 200 ns median) against a baseline measured in the same run:
//! a plain `HashMap` lookup under a `Mutex`, cloning the token out.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use azure_mint::{Error, FetchToken, Token, TokenCache};

fn main() {
    divan::main();
}

const IDENTITY: &str =
    "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/my-resource-group/providers/Microsoft.ManagedIdentity/userAssignedIdentities/teleport-azure";
const SCOPE: &str = "https://management.azure.com/.default";

struct Fixed;

#[async_trait::async_trait]
impl FetchToken for Fixed {
    async fn fetch(&self, _identity: &str, _scope: &str) -> Result<Token, Error> {
        Ok(Token::new(
            "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.payload.signature",
            SystemTime::now() + Duration::from_secs(3600),
        ))
    }
}

fn warm_cache() -> Option<TokenCache> {
    let cache = TokenCache::new(Arc::new(Fixed));
    let rt = tokio::runtime::Builder::new_current_thread().build().ok()?;
    // Fill the cache, with other identities around so the map is not trivially small.
    for i in 0..64 {
        rt.block_on(cache.get(&format!("{IDENTITY}-{i}"), SCOPE))
            .ok()?;
    }
    rt.block_on(cache.get(IDENTITY, SCOPE)).ok()?;
    Some(cache)
}

#[divan::bench]
fn cache_hit(bencher: divan::Bencher) {
    let Some(cache) = warm_cache() else {
        return;
    };
    bencher.bench_local(|| cache.get_cached(divan::black_box(IDENTITY), divan::black_box(SCOPE)));
}

#[divan::bench]
fn baseline_mutex_hashmap(bencher: divan::Bencher) {
    let mut map: HashMap<(String, String), Arc<str>> = HashMap::new();
    for i in 0..64 {
        map.insert(
            (format!("{IDENTITY}-{i}"), SCOPE.to_string()),
            Arc::from("t"),
        );
    }
    map.insert((IDENTITY.to_string(), SCOPE.to_string()), Arc::from("t"));
    let map = Mutex::new(map);
    let key = (IDENTITY.to_string(), SCOPE.to_string());
    bencher.bench_local(|| {
        map.lock()
            .ok()
            .and_then(|m| m.get(divan::black_box(&key)).cloned())
    });
}
