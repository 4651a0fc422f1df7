"""The Bus port: carries push batches to the gateway that holds the recipients."""
