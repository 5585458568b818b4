"""The sample Feast repo (see features.py). Importable from the checkout, so the tests and
the demo can use its data generator and stream producer; `feast apply` skips this file,
generate_data.py and stream_producer.py (.feastignore)."""
