echo "some notes" > notes.txt && gzip -n notes.txt
mkdir p && echo in > p/in && tar -cf plain.tar -C p . && rm -rf p
