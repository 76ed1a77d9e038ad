"""Generation at scale: plan rows -> composite sampler actors -> Parquet shards, exactly once."""
