//! Property tests: whatever we write reads back identically, with every reader and compression.

use proptest::prelude::*;
use shardfeed_record_format::{
    Compression, Example, Feature, IndexedFile, ReaderOptions, RecordReader,
};

use crate::support::write_file;

fn feature() -> impl Strategy<Value = Feature> {
    prop_oneof![
        prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 0..4)
            .prop_map(Feature::bytes),
        prop::collection::vec(any::<f32>(), 0..8).prop_map(Feature::floats),
        prop::collection::vec(any::<i64>(), 0..8).prop_map(Feature::int64s),
        Just(Feature { kind: None }),
    ]
}

fn example() -> impl Strategy<Value = Example> {
    prop::collection::btree_map("[a-z_/]{0,12}", feature(), 0..6).prop_map(|features| {
        features
            .into_iter()
            .fold(Example::new(), |example, (name, f)| example.with(name, f))
    })
}

fn compression() -> impl Strategy<Value = Compression> {
    prop::sample::select(Compression::ALL.to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn examples_round_trip_bit_for_bit(examples in prop::collection::vec(example(), 0..12), compression in compression()) {
        let payloads: Vec<Vec<u8>> = examples.iter().map(Example::to_bytes).collect();
        let file = write_file(&payloads, compression);
        let read: Vec<Vec<u8>> = RecordReader::new(&file[..], ReaderOptions::compression(compression))
            .collect::<Result<_, _>>()
            .unwrap();
        prop_assert_eq!(&read, &payloads);
        for (bytes, original) in read.iter().zip(&examples) {
            // Compare serialisations, so NaN payloads compare by their bits.
            prop_assert_eq!(Example::decode(bytes).unwrap().to_bytes(), original.to_bytes());
        }
    }

    #[test]
    fn any_payload_bytes_round_trip_through_files_with_random_access(
        payloads in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..600), 0..10),
        compression in compression(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data00-1.tfrec");
        let mut writer = shardfeed_record_format::FileWriter::create(&path, compression).unwrap();
        for payload in &payloads {
            writer.write_record(payload).unwrap();
        }
        let index = writer.commit().unwrap();
        prop_assert_eq!(index.len(), payloads.len());
        let mut file = IndexedFile::open(&path, ReaderOptions::compression(compression)).unwrap();
        for i in (0..payloads.len()).rev() {
            prop_assert_eq!(&file.read_record(i).unwrap(), &payloads[i]);
        }
    }
}
