"""shipper: Alibaba Cloud ECS events into a searchable audit trail and safe automatic reactions."""

__version__ = "0.1.0"
