//! Declares a configuration section once. Each option is one entry: its
//! doc, its field and type, its default and, when the command line may set
//! it, its flag and `QUIVER_*` variable. From that one list come the
//! section's struct (read from TOML, unknown keys refused, absent keys
//! defaulted), its `Default`, its flags (clap `Args`, flattened into
//! [`super::Flags`]) and the writing of every given flag over its setting,
//! so no option can be documented, defaulted, flagged or applied in one
//! place and forgotten in another.

use std::net::SocketAddr;
use std::path::PathBuf;

use quiver_sql::DistributedMode;

use super::values::{ByteSize, Eviction, MissPolicy, Span};

/// How a given flag writes the setting it names: the flag parses the
/// setting's own type, or, for an optional setting, the type it holds.
pub trait FlagOf {
    type Flag: Clone + Send + Sync + 'static;
    fn set(setting: &mut Self, value: &Self::Flag);
}

impl<T: Clone + Send + Sync + 'static> FlagOf for Option<T> {
    type Flag = T;
    fn set(setting: &mut Self, value: &T) {
        *setting = Some(value.clone());
    }
}

macro_rules! plain_flags {
    ($($ty:ty),*) => {
        $(impl FlagOf for $ty {
            type Flag = $ty;
            fn set(setting: &mut Self, value: &$ty) {
                *setting = value.clone();
            }
        })*
    };
}

plain_flags!(
    ByteSize,
    Span,
    Eviction,
    MissPolicy,
    DistributedMode,
    PathBuf,
    SocketAddr,
    usize,
    bool
);

/// A list is only ever set by the file (its flag is `[skip]`).
impl<T: Clone + Send + Sync + 'static> FlagOf for Vec<T> {
    type Flag = Vec<T>;
    fn set(setting: &mut Self, value: &Vec<T>) {
        setting.clone_from(value);
    }
}

/// `section! { /// doc... pub struct Name / NameFlags { entries } }`, an
/// entry being `/// doc... field: Type = default, [clap args];`: the
/// flag's `#[arg(...)]`, or `[skip]` for an option only the file sets
/// (`#[serde(...)]` after the doc passes through to the field).
macro_rules! section {
    (
        $(#[doc = $sdoc:literal])*
        pub struct $name:ident / $flags:ident {
            $(
                $(#[doc = $doc:literal])*
                $(#[serde($($serde:tt)*)])*
                $field:ident: $ty:ty = $default:expr, [$($arg:tt)*];
            )*
        }
    ) => {
        $(#[doc = $sdoc])*
        #[derive(Debug, Clone, serde::Deserialize)]
        #[serde(deny_unknown_fields, default)]
        pub struct $name {
            $(
                $(#[doc = $doc])*
                $(#[serde($($serde)*)])*
                pub $field: $ty,
            )*
        }

        impl Default for $name {
            fn default() -> Self {
                $name {
                    $($field: $default,)*
                }
            }
        }

        #[doc = concat!("The command-line flags of [`", stringify!($name), "`]; each also reads its `QUIVER_*` variable and, when given, wins over the file.")]
        #[derive(Debug, Default, clap::Args)]
        pub struct $flags {
            $(
                $(#[doc = $doc])*
                #[arg($($arg)*)]
                pub $field: Option<<$ty as $crate::config::section::FlagOf>::Flag>,
            )*
        }

        impl $flags {
            /// Writes every given flag over its setting.
            pub(super) fn apply(&self, section: &mut $name) {
                $(
                    if let Some(value) = &self.$field {
                        <$ty as $crate::config::section::FlagOf>::set(&mut section.$field, value);
                    }
                )*
            }
        }
    };
}

pub(crate) use section;
