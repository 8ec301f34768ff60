//! Paging and filters for CUMI message lists and CUPI user searches.

use crate::CucError;

/// A page of a folder's messages. CUMI pages start at 1 (notes §1.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageQuery {
    pub page_number: u32,
    pub rows_per_page: u32,
    /// `read=true|false` filter.
    pub read: Option<bool>,
    /// `sortkey=arrivaltime&sortorder=...`; `None` = CUC's default order (unread first,
    /// then read, each newest first).
    pub oldest_first: Option<bool>,
}

impl Default for MessageQuery {
    fn default() -> Self {
        MessageQuery {
            page_number: 1,
            rows_per_page: 100,
            read: None,
            oldest_first: None,
        }
    }
}

impl MessageQuery {
    pub(crate) fn params(&self) -> Vec<(&'static str, String)> {
        // The CUMI guide spells these lower-case (notes §1.1).
        let mut p = vec![
            ("pagenumber", self.page_number.to_string()),
            ("rowsperpage", self.rows_per_page.to_string()),
        ];
        if let Some(read) = self.read {
            p.push(("read", read.to_string()));
        }
        if let Some(oldest) = self.oldest_first {
            p.push(("sortkey", "arrivaltime".into()));
            p.push((
                "sortorder",
                if oldest { "ascending" } else { "descending" }.into(),
            ));
        }
        p
    }
}

/// A CUPI column a user search can filter on (notes §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserField {
    ObjectId,
    Alias,
    FirstName,
    LastName,
    DisplayName,
    /// The corporate e-mail address (`EmailAddress`).
    EmailAddress,
    /// The CUC SMTP address (`alias@<cuc smtp domain>`). Filtering on it is not documented
    /// by Cisco (notes §2, uncertain); `EmailAddress` is the documented column.
    SmtpAddress,
    /// The extension (`DtmfAccessId`).
    Extension,
}

impl UserField {
    fn column(self) -> &'static str {
        match self {
            UserField::ObjectId => "objectid",
            UserField::Alias => "alias",
            UserField::FirstName => "firstname",
            UserField::LastName => "lastname",
            UserField::DisplayName => "displayname",
            UserField::EmailAddress => "emailaddress",
            UserField::SmtpAddress => "smtpaddress",
            UserField::Extension => "DtmfAccessId",
        }
    }
}

impl std::str::FromStr for UserField {
    type Err = CucError;
    fn from_str(s: &str) -> Result<Self, CucError> {
        Ok(match s.to_ascii_lowercase().replace(['-', '_'], "").as_str() {
            "objectid" | "id" => UserField::ObjectId,
            "alias" => UserField::Alias,
            "firstname" => UserField::FirstName,
            "lastname" => UserField::LastName,
            "displayname" | "name" => UserField::DisplayName,
            "emailaddress" | "email" => UserField::EmailAddress,
            "smtpaddress" | "smtp" => UserField::SmtpAddress,
            "extension" | "dtmfaccessid" => UserField::Extension,
            _ => {
                return Err(CucError::InvalidInput(format!(
                    "unknown user field {s:?} (objectid, alias, firstname, lastname, displayname, email, smtp, extension)"
                )))
            }
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    Is(String),
    StartsWith(String),
}

/// `query=(column is value)` or `(column startswith value)` (notes §2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserFilter {
    field: UserField,
    op: Op,
}

impl UserFilter {
    pub fn is(field: UserField, value: impl Into<String>) -> Self {
        UserFilter {
            field,
            op: Op::Is(value.into()),
        }
    }

    pub fn starts_with(field: UserField, value: impl Into<String>) -> Self {
        UserFilter {
            field,
            op: Op::StartsWith(value.into()),
        }
    }

    /// The `query` value. Parentheses would end CUPI's expression early and control
    /// characters have no place in it, so values holding them are refused.
    pub fn to_query(&self) -> Result<String, CucError> {
        let (op, value) = match &self.op {
            Op::Is(v) => ("is", v),
            Op::StartsWith(v) => ("startswith", v),
        };
        let value = value.trim();
        if value.is_empty() {
            return Err(CucError::InvalidInput("an empty filter value".into()));
        }
        if value.contains(['(', ')']) || value.chars().any(char::is_control) {
            return Err(CucError::InvalidInput(format!(
                "filter value {value:?} holds parentheses or control characters, which CUPI's query syntax cannot carry"
            )));
        }
        Ok(format!("({} {op} {value})", self.field.column()))
    }
}

/// A page of CUPI users, optionally filtered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserQuery {
    pub filter: Option<UserFilter>,
    pub page_number: u32,
    pub rows_per_page: u32,
}

impl Default for UserQuery {
    fn default() -> Self {
        UserQuery {
            filter: None,
            page_number: 1,
            rows_per_page: 100,
        }
    }
}

impl UserQuery {
    pub(crate) fn params(&self) -> Result<Vec<(&'static str, String)>, CucError> {
        // CUPI spells these in camel case (notes §1.1).
        let mut p = vec![
            ("rowsPerPage", self.rows_per_page.to_string()),
            ("pageNumber", self.page_number.to_string()),
        ];
        if let Some(f) = &self.filter {
            p.push(("query", f.to_query()?));
        }
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_write_cupi_syntax() {
        assert_eq!(
            UserFilter::is(UserField::Alias, "jdoe").to_query().unwrap(),
            "(alias is jdoe)"
        );
        assert_eq!(
            UserFilter::starts_with(UserField::DisplayName, " John Sm ")
                .to_query()
                .unwrap(),
            "(displayname startswith John Sm)"
        );
        assert_eq!(
            UserFilter::is(UserField::Extension, "1001")
                .to_query()
                .unwrap(),
            "(DtmfAccessId is 1001)"
        );
        for bad in ["x) or (alias is y", "", "a\nb"] {
            assert!(
                UserFilter::is(UserField::Alias, bad).to_query().is_err(),
                "{bad:?}"
            );
        }
        assert_eq!(
            "email".parse::<UserField>().unwrap(),
            UserField::EmailAddress
        );
        assert!("password".parse::<UserField>().is_err());
    }
}
