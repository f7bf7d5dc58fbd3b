//! A session's page-flow links as the fold reports them: the change from the links
//! before an event to those after it, as retractions and additions.

use super::Sink;
use crate::journey::Links;

/// Retracts the links `before` and adds `after`, leaving out the ones in both (links
/// of another landing page are other links: nothing cancels then).
pub(super) fn emit_links(before: Links, after: Links, sink: &mut impl Sink) {
    let (before_landing, mut before) = before;
    let (after_landing, mut after) = after;
    if before_landing == after_landing && before == after {
        return;
    }
    if before_landing != after_landing {
        for link in before {
            sink.flow(link, &before_landing, -1);
        }
        for link in after {
            sink.flow(link, &after_landing, 1);
        }
        return;
    }
    before.sort_unstable();
    after.sort_unstable();
    let (mut i, mut j) = (0, 0);
    let mut before = before.into_iter().map(Some).collect::<Vec<_>>();
    let mut after = after.into_iter().map(Some).collect::<Vec<_>>();
    while i < before.len() && j < after.len() {
        match before[i].cmp(&after[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                before[i] = None;
                after[j] = None;
                i += 1;
                j += 1;
            }
        }
    }
    for link in before.into_iter().flatten() {
        sink.flow(link, &before_landing, -1);
    }
    for link in after.into_iter().flatten() {
        sink.flow(link, &after_landing, 1);
    }
}
