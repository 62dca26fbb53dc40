//! The flags that say how records are read (`stream`, `train`, `evaluate`): the features that
//! hold the image and the class, and the square side images of another size are made into.

use shardfeed_dataset::stream::RecordFormat;
use shardfeed_record_format::ExampleKeys;

/// Where the image and class are in each record.
#[derive(Debug, Clone, clap::Args)]
pub struct KeyArgs {
    /// The feature holding the encoded image (default: `image`, or TensorFlow's
    /// `image/encoded` where the records have no `image`).
    #[arg(long, value_name = "NAME")]
    pub image_key: Option<String>,
    /// The int64 feature holding the class (default: `class`, or TensorFlow's
    /// `image/class/label` with `image/encoded`).
    #[arg(long, value_name = "NAME")]
    pub label_key: Option<String>,
}

impl KeyArgs {
    /// The keys asked for (one named: the other is shardfeed's), or `None` to detect them.
    pub fn keys(&self) -> Option<ExampleKeys> {
        ExampleKeys::named_or_detected(self.image_key.as_deref(), self.label_key.as_deref())
    }
}

/// How records are read: their keys and the square side.
#[derive(Debug, Clone, clap::Args)]
pub struct RecordArgs {
    #[command(flatten)]
    pub keys: KeyArgs,
    /// The side of the square every image is made into where it is not one already (shorter
    /// side → SIZE, centre crop), 8–4096 (default: a `crop` folder's size; 160 for records of
    /// varying size: `--resize fit|keep` shards, other writers' records).
    #[arg(long, value_parser = crate::ranges::u32_in(crate::ranges::MIN_SIZE, crate::ranges::MAX_SIZE))]
    pub size: Option<u32>,
}

impl RecordArgs {
    /// As the library takes it.
    pub fn format(&self) -> RecordFormat {
        RecordFormat {
            keys: self.keys.keys(),
            size: self.size,
        }
    }
}
