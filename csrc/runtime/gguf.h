// GGUF reader: memory-maps a file, validates its header, metadata and tensor
// table against the file's size, and hands out in-place tensor pointers.
// Not a writer, and not the interpretation of the metadata (models do that).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace pyllm {

// Metadata value types of the GGUF format.
enum class GGUFType : uint32_t {
    UINT8 = 0, INT8 = 1, UINT16 = 2, INT16 = 3, UINT32 = 4, INT32 = 5, FLOAT32 = 6,
    BOOL = 7, STRING = 8, ARRAY = 9, UINT64 = 10, INT64 = 11, FLOAT64 = 12,
};

const char* gguf_type_name(GGUFType t);

struct GGUFValue {
    GGUFType type = GGUFType::UINT8;
    uint64_t u = 0;  // unsigned integers and bool
    int64_t i = 0;   // signed integers
    double f = 0.0;  // floats
    std::string str;
    // arrays
    GGUFType elem = GGUFType::UINT8;
    uint64_t count = 0;
    uint64_t data_offset = 0;        // numeric elements: their first byte in the file
    std::vector<std::string> strs;   // string elements
    std::vector<GGUFValue> items;    // array elements
};

struct GGUFTensor {
    std::string name;
    uint32_t type = 0;        // ggml type id: a row of kQuantTypes (kernels/quant_types.h)
    std::vector<int64_t> ne;  // ggml order: ne[0] is the contiguous dimension
    uint64_t offset = 0;      // absolute byte offset in the file
    uint64_t nbytes = 0;
    int64_t numel() const {
        int64_t n = 1;
        for (int64_t d : ne) n *= d;
        return n;
    }
};

class GGUFFile {
public:
    // Maps and parses `path`; throws std::invalid_argument with the reason
    // (and the byte offset) when the file is not a well-formed GGUF file.
    explicit GGUFFile(const std::string& path);
    ~GGUFFile();
    GGUFFile(const GGUFFile&) = delete;
    GGUFFile& operator=(const GGUFFile&) = delete;

    uint32_t version() const { return version_; }
    uint64_t alignment() const { return alignment_; }
    uint64_t data_offset() const { return data_offset_; }
    uint64_t file_size() const { return size_; }
    const std::string& path() const { return path_; }

    const std::vector<std::pair<std::string, GGUFValue>>& metadata() const { return kv_; }
    const GGUFValue* find(const std::string& key) const;
    const std::vector<GGUFTensor>& tensors() const { return tensors_; }
    const GGUFTensor* tensor(const std::string& name) const;

    // Why the file no longer holds what was mapped ("" when it does): its size or
    // modification time changed (truncated or rewritten in place). Touching a page
    // past a truncated end raises SIGBUS, so callers check before each use of the
    // mapping; one fstat of the descriptor kept open, about a microsecond.
    std::string changed() const;

    const uint8_t* base() const { return base_; }
    const uint8_t* data(const GGUFTensor& t) const { return base_ + t.offset; }

private:
    std::string path_;
    int fd_ = -1;              // kept open: fstat sees the mapped file even after a rename
    int64_t mtime_ns_ = 0;     // modification time when mapped
    const uint8_t* base_ = nullptr;
    uint64_t size_ = 0;
    uint32_t version_ = 0;
    uint64_t alignment_ = 32;
    uint64_t data_offset_ = 0;
    std::vector<std::pair<std::string, GGUFValue>> kv_;
    std::map<std::string, size_t> kv_index_;
    std::vector<GGUFTensor> tensors_;
    std::map<std::string, size_t> tensor_index_;
};

}  // namespace pyllm
