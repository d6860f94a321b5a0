//! Source settings that are only ever held valid: retention and the selected data types.

use serde::{Deserialize, Serialize};

use crate::platform::Platform;

/// How many of a source's newest backups retention keeps at most: 1 to 1000 (`keepLast`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "u32", into = "u32")]
pub struct KeepLast(u16);

impl KeepLast {
    pub const MIN: u32 = 1;
    pub const MAX: u32 = 1000;

    pub fn parse(count: i64) -> Result<Self, String> {
        if (i64::from(Self::MIN)..=i64::from(Self::MAX)).contains(&count) {
            Ok(Self(count as u16))
        } else {
            Err(format!(
                "must be between {} and {}, or null for no limit",
                Self::MIN,
                Self::MAX
            ))
        }
    }

    pub fn count(self) -> u32 {
        u32::from(self.0)
    }
}

impl TryFrom<u32> for KeepLast {
    type Error = String;
    fn try_from(value: u32) -> Result<Self, Self::Error> {
        Self::parse(i64::from(value))
    }
}

impl From<KeepLast> for u32 {
    fn from(value: KeepLast) -> Self {
        value.count()
    }
}

/// How long a source's backups are kept: 1 to 3650 days.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "u32", into = "u32")]
pub struct RetentionDays(u16);

impl RetentionDays {
    pub const MIN: u32 = 1;
    pub const MAX: u32 = 3650;
    /// When the client does not say.
    pub const DEFAULT: Self = Self(90);

    pub fn parse(days: i64) -> Result<Self, String> {
        if (i64::from(Self::MIN)..=i64::from(Self::MAX)).contains(&days) {
            Ok(Self(days as u16))
        } else {
            Err(format!(
                "must be between {} and {} days",
                Self::MIN,
                Self::MAX
            ))
        }
    }

    pub fn days(self) -> u32 {
        u32::from(self.0)
    }
}

impl TryFrom<u32> for RetentionDays {
    type Error = String;
    fn try_from(value: u32) -> Result<Self, Self::Error> {
        Self::parse(i64::from(value))
    }
}

impl From<RetentionDays> for u32 {
    fn from(value: RetentionDays) -> Self {
        value.days()
    }
}

/// A non-empty set of a platform's data types, without repeats, in the catalog's order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DataTypes(Vec<String>);

impl DataTypes {
    /// `None` selects every data type of the platform that ListBackup can back up. A data type the catalog
    /// lists but ListBackup cannot back up yet is refused by name, rather than accepted and failed at sync.
    pub fn parse(platform: &Platform, selected: Option<&[String]>) -> Result<Self, String> {
        let Some(selected) = selected else {
            let all = Self::all_of(platform);
            if all.0.is_empty() {
                return Err(format!(
                    "no data type of {} can be backed up yet (see GET /platforms/{})",
                    platform.name, platform.id
                ));
            }
            return Ok(all);
        };
        if selected.is_empty() {
            return Err("must name at least one data type (omit it to back up all of them)".into());
        }
        if let Some(unknown) = selected.iter().find(|n| platform.data_type(n).is_none()) {
            return Err(format!(
                "`{unknown}` is not a data type of {} (see GET /platforms/{})",
                platform.name, platform.id
            ));
        }
        if let Some(unlisted) = selected
            .iter()
            .find(|n| platform.data_type(n).is_some_and(|d| !d.can_back_up()))
        {
            return Err(format!(
                "`{unlisted}` of {} cannot be backed up yet (see GET /platforms/{})",
                platform.name, platform.id
            ));
        }
        Ok(Self(
            platform
                .data_types
                .iter()
                .filter(|d| selected.iter().any(|n| n == d.name))
                .map(|d| d.name.to_owned())
                .collect(),
        ))
    }

    /// Every data type of the platform that ListBackup can back up.
    pub fn all_of(platform: &Platform) -> Self {
        Self(
            platform
                .data_types
                .iter()
                .filter(|d| d.can_back_up())
                .map(|d| d.name.to_owned())
                .collect(),
        )
    }

    pub fn names(&self) -> &[String] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A catalog entry with a data type ListBackup cannot back up: naming it is refused by name, and "every
    /// data type" leaves it out, so a source never holds a data type that would only fail at sync.
    #[test]
    fn a_data_type_that_cannot_be_backed_up_is_refused_by_name() {
        use crate::platform::{find, DataType};
        let stripe = find("stripe").unwrap();
        let types: &'static [DataType] = Box::leak(
            vec![
                stripe.data_types[0].clone(),
                DataType::not_listed("ledgers", "not listed yet"),
            ]
            .into_boxed_slice(),
        );
        let platform = Platform {
            data_types: types,
            ..stripe.clone()
        };
        let listed = stripe.data_types[0].name.to_owned();
        let err = DataTypes::parse(&platform, Some(&["ledgers".to_owned()])).unwrap_err();
        assert!(
            err.contains("`ledgers`") && err.contains("cannot be backed up"),
            "{err}"
        );
        let err =
            DataTypes::parse(&platform, Some(&[listed.clone(), "ledgers".to_owned()])).unwrap_err();
        assert!(err.contains("`ledgers`"), "{err}");
        assert_eq!(
            DataTypes::parse(&platform, None).unwrap().names(),
            std::slice::from_ref(&listed)
        );
        assert_eq!(DataTypes::all_of(&platform).names(), [listed]);
    }

    #[test]
    fn retention_is_bounded() {
        assert!(RetentionDays::parse(0).is_err());
        assert!(RetentionDays::parse(3651).is_err());
        assert_eq!(RetentionDays::parse(3650).unwrap().days(), 3650);
        assert!(serde_json::from_str::<RetentionDays>("0").is_err());
    }

    #[test]
    fn data_types_are_a_subset_in_catalog_order() {
        let stripe = crate::platform::find("stripe").unwrap();
        let all = DataTypes::all_of(stripe);
        assert!(all.names().len() > 1);
        let last_first: Vec<String> = all.names().iter().rev().cloned().collect();
        let picked = DataTypes::parse(stripe, Some(&last_first)).unwrap();
        assert_eq!(picked, all);
        let twice = vec![all.names()[0].clone(), all.names()[0].clone()];
        assert_eq!(
            DataTypes::parse(stripe, Some(&twice))
                .unwrap()
                .names()
                .len(),
            1
        );
        assert!(DataTypes::parse(stripe, Some(&["tweets".to_owned()])).is_err());
        assert!(DataTypes::parse(stripe, Some(&[])).is_err());
    }
}
