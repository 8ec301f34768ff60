//! Directory numbers: addLine, getLine, listLine, removeLine.

use serde::Serialize;

use crate::client::Access;
use crate::list::{ListCall, ListOptions, ListSummary, Pager};
use crate::model::{returned_tags, write_returned_tags};
use crate::xml::{ResponsePart, SoapWriter, XmlNode};
use crate::{AxlClient, AxlError};

/// A directory number (`LLine` / `RLine`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Line {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route_partition: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alerting_name: Option<String>,
    /// Devices the line appears on (getLine only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub associated_devices: Vec<String>,
}

impl Line {
    pub(crate) fn from_node(node: &XmlNode) -> Result<Line, AxlError> {
        Ok(Line {
            uuid: node.attribute("uuid").map(str::to_owned),
            pattern: node.child_text("pattern"),
            description: node.child_text("description"),
            usage: node.child_text("usage"),
            route_partition: node.child_text("routePartitionName"),
            alerting_name: node.child_text("alertingName"),
            associated_devices: node
                .child("associatedDevices")
                .map(|d| {
                    d.children
                        .iter()
                        .filter(|c| c.name == "device")
                        .map(|c| c.text.trim().to_owned())
                        .filter(|t| !t.is_empty())
                        .collect()
                })
                .unwrap_or_default(),
        })
    }
}

returned_tags! {
    /// Fields listLine can return, in `LLine` order.
    LineTag {
        Pattern => "pattern",
        Description => "description",
        Usage => "usage",
        RoutePartitionName => "routePartitionName",
        AlertingName => "alertingName",
    }
}

/// listLine search criteria (`%` wildcard).
#[derive(Debug, Clone, Default)]
pub struct LineSearch {
    pub pattern: Option<String>,
    pub description: Option<String>,
    pub route_partition: Option<String>,
}

impl LineSearch {
    fn write(&self, w: &mut SoapWriter) {
        w.start("searchCriteria");
        let any = self.description.is_some() || self.route_partition.is_some();
        match (&self.pattern, any) {
            (Some(p), _) => w.text("pattern", p),
            (None, false) => w.text("pattern", "%"),
            (None, true) => {}
        }
        w.opt("description", self.description.as_deref());
        w.opt("routePartitionName", self.route_partition.as_deref());
        w.end("searchCriteria");
    }
}

/// A new directory number (`XLine`).
#[derive(Debug, Clone)]
pub struct NewLine {
    pub pattern: String,
    pub description: Option<String>,
    /// "Device" for a phone line.
    pub usage: String,
    pub route_partition: Option<String>,
    pub alerting_name: Option<String>,
}

impl NewLine {
    pub fn device(pattern: impl Into<String>, route_partition: Option<&str>) -> Self {
        NewLine {
            pattern: pattern.into(),
            description: None,
            usage: "Device".into(),
            route_partition: route_partition.map(str::to_owned),
            alerting_name: None,
        }
    }
}

/// How getLine addresses a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineKey<'a> {
    Pattern {
        pattern: &'a str,
        route_partition: Option<&'a str>,
    },
    Uuid(&'a str),
}

impl AxlClient {
    /// addLine; returns the new line's UUID. A pattern already in the partition is AXL
    /// fault 4052.
    pub async fn add_line(&self, line: &NewLine) -> Result<String, AxlError> {
        const OP: &str = "addLine";
        let mut w = self.writer(OP);
        w.start("line");
        w.text("pattern", &line.pattern);
        w.opt("description", line.description.as_deref());
        w.text("usage", &line.usage);
        w.opt("routePartitionName", line.route_partition.as_deref());
        w.opt("alertingName", line.alerting_name.as_deref());
        w.end("line");
        self.write_call(OP, w.finish()).await
    }

    /// getLine by pattern and partition, or UUID.
    pub async fn get_line(&self, key: LineKey<'_>) -> Result<Line, AxlError> {
        const OP: &str = "getLine";
        let mut w = self.writer(OP);
        match key {
            LineKey::Pattern {
                pattern,
                route_partition,
            } => {
                w.text("pattern", pattern);
                w.text_or_nil("routePartitionName", route_partition);
            }
            LineKey::Uuid(uuid) => w.text("uuid", uuid),
        }
        let mut line = None;
        self.call(OP, w.finish(), Access::Read, |part| {
            if let ResponsePart::Item(node) = part {
                if node.name == "line" {
                    line = Some(Line::from_node(&node)?);
                }
            }
            Ok(())
        })
        .await?;
        line.ok_or_else(|| AxlError::Protocol {
            operation: OP.into(),
            detail: "getLine answer has no <line>".into(),
        })
    }

    /// removeLine by pattern and partition, or UUID; returns the removed line's UUID.
    /// (`RemoveLineReq`: uuid, or pattern plus optional routePartitionName.)
    pub async fn remove_line(&self, key: LineKey<'_>) -> Result<String, AxlError> {
        const OP: &str = "removeLine";
        let mut w = self.writer(OP);
        match key {
            LineKey::Pattern {
                pattern,
                route_partition,
            } => {
                w.text("pattern", pattern);
                w.text_or_nil("routePartitionName", route_partition);
            }
            LineKey::Uuid(uuid) => w.text("uuid", uuid),
        }
        self.write_call(OP, w.finish()).await
    }

    /// One page of listLine.
    pub async fn list_lines_page(
        &self,
        search: &LineSearch,
        tags: &[LineTag],
        skip: u64,
        first: u32,
    ) -> Result<Vec<Line>, AxlError> {
        self.list_page(&line_list_call(search, tags), skip, first)
            .await
    }

    /// Every matching line, one page per [`Pager::next_page`] call.
    pub fn line_pager(
        &self,
        search: &LineSearch,
        tags: &[LineTag],
        options: ListOptions,
    ) -> Pager<Line> {
        Pager::list(self, line_list_call(search, tags), options)
    }

    /// Every matching line, page by page; `on_page` sees each page once.
    pub async fn for_each_line_page<E: From<AxlError>>(
        &self,
        search: &LineSearch,
        tags: &[LineTag],
        options: ListOptions,
        on_page: impl AsyncFnMut(Vec<Line>) -> Result<(), E>,
    ) -> Result<ListSummary, E> {
        self.line_pager(search, tags, options)
            .for_each(on_page)
            .await
    }
}

fn line_list_call(search: &LineSearch, tags: &[LineTag]) -> ListCall<Line> {
    let search = search.clone();
    let tags = tags.to_vec();
    ListCall {
        operation: "listLine",
        item: "line",
        write_criteria: Box::new(move |w| {
            search.write(w);
            write_returned_tags(w, &tags, LineTag::as_str, LineTag::placeholder);
        }),
        convert: Line::from_node,
    }
}
