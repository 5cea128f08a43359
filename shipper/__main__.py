from shipper.cli import main

main(prog_name="shipper")
