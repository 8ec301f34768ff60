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
pub(crate) struct ListCall<T> {
    pub operation: &'static str,
    pub item: &'static str,
    pub write_criteria: Box<dyn Fn(&mut SoapWriter) + Send + Sync>,
    pub convert: fn(&XmlNode) -> Result<T, AxlError>,
}

/// Pages of a list operation (or a paged SQL query), fetched on demand with
/// [`Pager::next_page`]. The page shrinks when CUCM answers "Query request too large";
/// memory holds one page at a time.
pub struct Pager<T> {
    client: AxlClient,
    source: PageSource<T>,
    page_size: u32,
    min_page_size: u32,
    summary: ListSummary,
    finished: bool,
}

enum PageSource<T> {
    List(ListCall<T>),
    /// Everything after `SELECT` of a query paged with Informix `SKIP n FIRST m`.
    Sql {
        select_list_and_rest: String,
        convert: fn(crate::SqlRow) -> T,
    },
}

impl<T> Pager<T> {
    pub(crate) fn list(client: &AxlClient, call: ListCall<T>, options: ListOptions) -> Self {
        Self::new(client, PageSource::List(call), options)
    }

    pub(crate) fn sql(
        client: &AxlClient,
        select_list_and_rest: String,
        convert: fn(crate::SqlRow) -> T,
        options: ListOptions,
    ) -> Self {
        Self::new(
            client,
            PageSource::Sql {
                select_list_and_rest,
                convert,
            },
            options,
        )
    }

    fn new(client: &AxlClient, source: PageSource<T>, options: ListOptions) -> Self {
        Pager {
            client: client.clone(),
            source,
            page_size: options.page_size.max(1),
            min_page_size: options.min_page_size.max(1),
            summary: ListSummary::default(),
            finished: false,
        }
    }

    /// What has been read so far.
    pub fn summary(&self) -> ListSummary {
        self.summary
    }

    /// The next page, or `None` after the last one.
    pub async fn next_page(&mut self) -> Result<Option<Vec<T>>, AxlError> {
        if self.finished {
            return Ok(None);
        }
        loop {
            let result = match &self.source {
                PageSource::List(call) => {
                    self.client
                        .list_page(call, self.summary.items, self.page_size)
                        .await
                }
                PageSource::Sql {
                    select_list_and_rest,
                    convert,
                } => {
                    let sql = format!(
                        "SELECT SKIP {} FIRST {} {select_list_and_rest}",
                        self.summary.items, self.page_size
                    );
                    self.client
                        .execute_sql_query(crate::SqlQuery::raw(sql))
                        .await
                        .map(|rows| rows.into_iter().map(convert).collect())
                }
            };
            let items = match result {
                Ok(items) => items,
                Err(e) => match e.query_too_large() {
                    Some(q) => {
                        let next = shrink_page(self.page_size, q.suggested_rows);
                        if next < self.min_page_size {
                            return Err(e);
                        }
                        tracing::info!(
                            from = self.page_size,
                            to = next,
                            total_rows = q.total_rows,
                            "response too large for CUCM; shrinking page"
                        );
                        self.client.note_page_shrink();
                        self.page_size = next;
                        continue;
                    }
                    None => return Err(e),
                },
            };
            let got = items.len() as u64;
            self.summary.pages += 1;
            self.summary.items += got;
            self.summary.final_page_size = self.page_size;
            if got < u64::from(self.page_size) {
                self.finished = true;
            }
            return Ok(if got == 0 { None } else { Some(items) });
        }
    }

    /// Drive the pager to the end, handing each page to `on_page`.
    pub async fn for_each<E: From<AxlError>>(
        mut self,
        mut on_page: impl AsyncFnMut(Vec<T>) -> Result<(), E>,
    ) -> Result<ListSummary, E> {
        while let Some(page) = self.next_page().await? {
            on_page(page).await?;
        }
        Ok(self.summary)
    }
}

impl AxlClient {
    /// Fetch one page (`skip`, `first`) of a list operation.
    pub(crate) async fn list_page<T>(
        &self,
        call: &ListCall<T>,
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
                    // More than asked for is not CUCM; stop before it costs memory.
                    if items.len() >= first as usize {
                        return Err(AxlError::Protocol {
                            operation: call.operation.into(),
                            detail: format!("more than the {first} records asked for"),
                        });
                    }
                    items.push((call.convert)(&node)?);
                }
            }
            Ok(())
        })
        .await?;
        Ok(items)
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
