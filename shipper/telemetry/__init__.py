"""What shipper says about itself: metrics (counters, gauges, a histogram; rendered for /metrics) and
logging (one line per record, secrets masked). The monitoring server will live here too."""
