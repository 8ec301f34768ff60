//! Paging through list operations with `skip`/`first`, shrinking the page when CUCM
//! answers "Query request too large".

use crate::client::Access;
use crate::xml::{ResponsePart, SoapWriter, XmlNode};
use crate::{AxlClient, AxlError};

/// How to page through a list operation.
#[derive(Debug, Clone, Copy)]
pub struct ListOptions {
    /// Rows asked for per request (`<first>`). Cisco's peers use 1,000.
    pub page_size: u32,
    /// Smallest page the client will shrink to before giving up.
    pub min_page_size: u32,
}

impl Default for ListOptions {
    fn default() -> Self {
        ListOptions {
            page_size: 1000,
            min_page_size: 1,
        }
    }
}

/// What a paged listing did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ListSummary {
    pub items: u64,
    pub pages: u64,
    /// The page size in use at the end (smaller than asked when CUCM's size cap bit).
    pub final_page_size: u32,
}

/// The next page size after CUCM said only fewer than `suggested` rows fit: 90 % of the
/// suggestion (rows vary in size), or half the page when the suggestion is of no use.
pub(crate) fn shrink_page(current: u32, suggested: u64) -> u32 {
    let from_suggestion = u32::try_from(suggested.saturating_mul(9) / 10).unwrap_or(u32::MAX);
    if from_suggestion > 0 && from_suggestion < current {
        from_suggestion
    } else {
        current / 2
    }
}

/// One list operation: its name, the element name of its items, and how to write the
/// search criteria and returned tags that precede `<skip>`/`<first>`.
pub(crate) struct ListCall<'a, T> {
    pub operation: &'static str,
    pub item: &'static str,
    pub write_criteria: &'a (dyn Fn(&mut SoapWriter) + Sync),
    pub convert: fn(&XmlNode) -> Result<T, AxlError>,
}

impl AxlClient {
    /// Fetch one page (`skip`, `first`) of a list operation.
    pub(crate) async fn list_page<T>(
        &self,
        call: &ListCall<'_, T>,
        skip: u64,
        first: u32,
    ) -> Result<Vec<T>, AxlError> {
        let mut w = self.writer(call.operation);
        (call.write_criteria)(&mut w);
        w.text("skip", &skip.to_string());
        w.text("first", &first.to_string());
        let mut items = Vec::with_capacity(first.min(10_000) as usize);
        self.call(call.operation, w.finish(), Access::Read, |part| {
            if let ResponsePart::Item(node) = part {
                if node.name == call.item {
                    items.push((call.convert)(&node)?);
                }
            }
            Ok(())
        })
        .await?;
        Ok(items)
    }

    /// Page through a list operation to the end, handing each page to `on_page`.
    /// Memory holds one page at a time.
    pub(crate) async fn list_all_pages<T>(
        &self,
        call: &ListCall<'_, T>,
        options: ListOptions,
        mut on_page: impl FnMut(Vec<T>) -> Result<(), AxlError>,
    ) -> Result<ListSummary, AxlError> {
        let mut page_size = options.page_size.max(1);
        let mut summary = ListSummary::default();
        loop {
            let items = match self.list_page(call, summary.items, page_size).await {
                Ok(items) => items,
                Err(e) => match e.query_too_large() {
                    Some(q) => {
                        let next = shrink_page(page_size, q.suggested_rows);
                        if next < options.min_page_size.max(1) {
                            return Err(e);
                        }
                        tracing::info!(
                            operation = call.operation,
                            from = page_size,
                            to = next,
                            total_rows = q.total_rows,
                            "response too large for CUCM; shrinking page"
                        );
                        self.note_page_shrink();
                        page_size = next;
                        continue;
                    }
                    None => return Err(e),
                },
            };
            let got = items.len() as u64;
            summary.pages += 1;
            summary.items += got;
            summary.final_page_size = page_size;
            if got > 0 {
                on_page(items)?;
            }
            if got < u64::from(page_size) {
                return Ok(summary);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::shrink_page;

    #[test]
    fn shrinking_always_makes_progress() {
        assert_eq!(shrink_page(1000, 844), 759);
        assert_eq!(shrink_page(1000, 5000), 500);
        assert_eq!(shrink_page(1000, 0), 500);
        assert_eq!(shrink_page(1, 1), 0);
        for page in 1..200u32 {
            for suggested in 0..300u64 {
                assert!(shrink_page(page, suggested) < page);
            }
        }
    }
}
