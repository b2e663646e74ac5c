//! Lists in pages. One `list` of every node or pod of a large cluster is a single response of
//! hundreds of megabytes (5,000 nodes, or the 8 operand pods per GPU node of the operator's
//! namespace), held as bytes and as decoded objects at once; pages of [`PAGE`] objects, each
//! reduced to what the caller keeps before the next is read, bound the peak to one page.

use kube::Api;
use kube::api::ListParams;
use serde::de::DeserializeOwned;

/// Objects per page: what kubectl asks for (`--chunk-size` 500).
pub const PAGE: u32 = 500;

/// Every object `api` lists, each turned by `keep` into what the caller holds, read in pages
/// of [`PAGE`]. The API server serves every page from the snapshot of the first, so the
/// result is as consistent as one list (an expired continue token is an error, 410 Gone).
pub async fn list_all<K, T>(
    api: &Api<K>,
    params: ListParams,
    keep: impl FnMut(K) -> T,
) -> Result<Vec<T>, kube::Error>
where
    K: kube::Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    list_in_pages(api, params, PAGE, keep).await
}

/// [`list_all`] with pages of `page` objects.
pub async fn list_in_pages<K, T>(
    api: &Api<K>,
    params: ListParams,
    page: u32,
    mut keep: impl FnMut(K) -> T,
) -> Result<Vec<T>, kube::Error>
where
    K: kube::Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    let mut out = Vec::new();
    let mut params = params.limit(page);
    loop {
        let listed = api.list(&params).await?;
        out.extend(listed.items.into_iter().map(&mut keep));
        match listed.metadata.continue_ {
            Some(token) if !token.is_empty() => params = params.continue_token(&token),
            _ => return Ok(out),
        }
    }
}

/// `object` without its `managedFields`: which field manager set which field, often a third
/// of a node or pod object, and read by nothing here.
pub fn without_managed_fields<K: kube::Resource>(mut object: K) -> K {
    object.meta_mut().managed_fields = None;
    object
}

/// A node without what no check reads and what is most of a real node's object: its
/// managedFields and the list of images the kubelet holds.
pub fn lean_node(n: k8s_openapi::api::core::v1::Node) -> k8s_openapi::api::core::v1::Node {
    let mut n = without_managed_fields(n);
    if let Some(s) = n.status.as_mut() {
        s.images = None;
    }
    n
}
