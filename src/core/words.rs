//! Enums whose values are words: metric label values, stored status and outcome columns.
//! One macro writes the parts every such enum needs, so the word for a variant is written
//! once: `ALL` (every value, for pre-registering label series and for parsing), `as_str`
//! (the word), `parse` and `Display`.

/// `words! { /// doc  #[other attributes] pub Name { Variant => "word", … } }`.
macro_rules! words {
    ($(#[$meta:meta])* $vis:vis $name:ident { $($(#[$vdoc:meta])* $variant:ident => $value:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        $vis enum $name {
            $($(#[$vdoc])* $variant,)+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $value,)+
                }
            }

            /// The value whose word this is.
            pub fn parse(word: &str) -> Option<$name> {
                $name::ALL.iter().copied().find(|v| v.as_str() == word)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                // `pad`, so a width in a format string (`{:<8}`) lays the word out.
                f.pad(self.as_str())
            }
        }
    };
}

pub(crate) use words;
