//! A macro for enums stored as text (state enums in SQL, event kinds in JSON).
//!
//! Every such enum gets an explicit, stable `as_str` and a `FromStr` that names the
//! type in its error, never `Debug`-derived names that would change on a rename.

/// Declares a fieldless enum with stable text names, `ALL`, `as_str`, `Display`,
/// `FromStr` and serde support using the same names.
macro_rules! text_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $text:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        pub enum $name {
            $( $(#[$vmeta])* #[serde(rename = $text)] $variant ),+
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The stable storage name.
            #[must_use]
            pub const fn as_str(&self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = $crate::error::ValidationError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err($crate::error::ValidationError::new(
                        stringify!($name),
                        format!("unknown value {other:?}"),
                    )),
                }
            }
        }
    };
}

pub(crate) use text_enum;
